"""The Celery application, configured from Django settings (the CELERY_ namespace).

Worker: celery -A controlpanel worker -l info
Beat:   celery -A controlpanel beat -l info   (exactly one beat process per deployment)
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

app = Celery("controlpanel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
