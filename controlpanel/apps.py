from __future__ import annotations

from django.apps import AppConfig


class ControlPanelConfig(AppConfig):
    name = "controlpanel"
    verbose_name = "Control panel"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from controlpanel import checks, database_roles  # noqa: F401  (registers the system checks)
        from controlpanel.middleware import session_restart

        # Staff sign-in through the admin starts a new absolute-expiry clock, as partner sign-in does.
        user_logged_in.connect(session_restart, dispatch_uid="controlpanel.session_restart")
