from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Holds only the `sandbox` management command. The sandbox has no models and no URLs here."""

    name = "sandbox"
    verbose_name = "Entra ID sandbox"
