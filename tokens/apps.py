from __future__ import annotations

from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens"

    def ready(self) -> None:
        # Registers the service-client admin; kept apart from tokens/admin.py (the staff admin).
        from tokens import admin_service_clients  # noqa: F401
