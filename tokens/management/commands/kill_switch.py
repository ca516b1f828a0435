"""Suspend or resume all access-token issuance from the command line (compromise response)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.audit import Actor
from tokens.issuance.killswitch import kill_switch_set
from tokens.models import Application


class Command(BaseCommand):
    help = "Engage or release the issuance kill switch, for all applications or one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["engage", "release"])
        parser.add_argument("--client-id", help="only this application (default: all)")
        parser.add_argument("--reason", default="", help="recorded in the audit trail")

    def handle(self, *args: Any, action: str, client_id: str | None, reason: str, **options: Any) -> None:
        application = None
        if client_id:
            application = Application.objects.filter(client_id=client_id).first()
            if application is None:
                raise CommandError(f"No application with client id {client_id}.")
        switch = kill_switch_set(
            engaged=action == "engage",
            actor=Actor.system("manage.py kill_switch"),
            application=application,
            reason=reason,
        )
        self.stdout.write(str(switch))
