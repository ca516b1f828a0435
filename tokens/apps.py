from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens"

    def ready(self) -> None:
        # Registers the admin modules kept apart from tokens/admin.py (small modules, one subject each).
        from tokens.staff_admin import grants, kill_switch, service_clients  # noqa: F401

        post_migrate.connect(_audit_partitions_ensure, sender=self)


def _audit_partitions_ensure(**kwargs: Any) -> None:
    """After every migrate, as beat does daily: a fresh deployment has its months ahead at once."""
    from tokens.audit_partitions import audit_partitions_ensure

    audit_partitions_ensure()
