"""Close operator alerts from the command line, with a reason (audited): one by id, or every open
alert of an application."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.audit import Actor
from tokens.models import OperatorAlert
from tokens.renewal.alerts import AlertAlreadyClosed, operator_alert_close


class Command(BaseCommand):
    help = "Close an operator alert (or every open alert of one application) with a reason."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("alert_id", nargs="?", type=int, help="the alert's id (see the admin or --list)")
        parser.add_argument("--client-id", help="close every open alert of this application instead")
        parser.add_argument("--reason", default="", help="required; recorded in the audit trail")
        parser.add_argument(
            "--list", dest="list_open", action="store_true", help="list the open alerts and close nothing"
        )

    def handle(
        self,
        *args: Any,
        alert_id: int | None,
        client_id: str | None,
        reason: str,
        list_open: bool,
        **options: Any,
    ) -> None:
        open_alerts = OperatorAlert.objects.filter(resolved_at=None).select_related("application")
        if list_open:
            for alert in open_alerts.order_by("pk"):
                pauses = "pauses renewal" if alert.pauses else "pauses nothing"
                self.stdout.write(
                    f"{alert.pk}\t{alert.application.client_id}\t{alert.code}\t{pauses}\t{alert.message}"
                )
            return
        if not reason.strip():
            raise CommandError("Give a --reason: it is recorded in the audit trail.")
        if (alert_id is None) == (client_id is None):
            raise CommandError("Name one alert id, or --client-id for every open alert of an application.")
        ids = (
            [alert_id]
            if alert_id is not None
            else list(open_alerts.filter(application__client_id=client_id).values_list("pk", flat=True))
        )
        if not ids:
            raise CommandError(f"No open alert for application {client_id}.")
        actor = Actor.system(f"manage.py close_alert ({getpass.getuser()})")
        for pk in ids:
            try:
                alert = operator_alert_close(alert_id=pk, actor=actor, reason=reason)
            except OperatorAlert.DoesNotExist as error:
                raise CommandError(f"No alert {pk}.") from error
            except AlertAlreadyClosed as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"Closed alert {alert.pk} ({alert.code}).")
