"""The demo's commands refuse to run in production: they start the sandbox (a local stand-in for
Microsoft that signs anyone in) or store its public demo application and a superuser with a known
password."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError


def demo_command_refuse_in_production(*, command: str) -> None:
    if settings.ENVIRONMENT == "production":
        raise CommandError(
            f"`manage.py {command}` is for the offline demo and refuses to run with "
            "ENVIRONMENT=production: it would start or store the sandbox's public demo material. "
            "Unset ENVIRONMENT (or set ENVIRONMENT=demo) on a machine that is not production."
        )
