"""System checks for the consent request the panel will send (everywhere, not only in production:
a consent Entra refuses breaks onboarding on a laptop just as well)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from partners.onboarding import consent_scopes_problem


@register()
def check_consent_scopes(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    problem = consent_scopes_problem(settings.SAM_AUDIENCES)
    if problem is None:
        return []
    return [
        Error(
            f"SAM_AUDIENCES cannot be consented to: {problem}.",
            hint="Declare named scopes for every audience (see docs/operations.md, 'The application "
            "registration's permissions'), including a Partner Center scope.",
            id="partners.E001",
        )
    ]
