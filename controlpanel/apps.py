from __future__ import annotations

from django.apps import AppConfig


class ControlPanelConfig(AppConfig):
    name = "controlpanel"
    verbose_name = "Control panel"

    def ready(self) -> None:
        from controlpanel import checks  # noqa: F401  (registers the system checks)
