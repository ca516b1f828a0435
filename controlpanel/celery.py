"""The Celery application, configured from Django settings (the CELERY_ namespace).

Worker: celery -A controlpanel worker -l info
Beat:   celery -A controlpanel beat -l info   (exactly one beat process per deployment)
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

app = Celery("controlpanel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _database_connections_tidy(sender: Task | None = None, **kwargs: Any) -> None:
    """Around each task, as Django does around each request: reuse the connection within
    DATABASE_CONN_MAX_AGE, close it when it is older or an error left it unusable. Not for eager
    tasks, which run inside the caller's transaction (tests)."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _keyset_load(**kwargs: Any) -> None:
    """Load (unwrap, when Key Vault wraps it) the keyset as the worker starts: a refusal stops the
    worker with a message naming what was refused, before it takes any task. SystemExit, because
    Celery logs and ignores any Exception a signal handler raises."""
    from tokens.encryption.errors import EncryptionError
    from tokens.encryption.keyset import keyset_get

    try:
        keyset_get()
    except EncryptionError as error:
        raise SystemExit(f"The worker cannot start: {error}") from None
