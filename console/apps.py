from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The staff console's home (an operations overview instead of the admin's list of models),
    its charts, and the kill-switch banner on every admin page."""

    name = "console"
    verbose_name = "Staff console"
