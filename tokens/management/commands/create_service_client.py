"""Create a service client for the token API and print its key, once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tokens.audit import Actor
from tokens.models import AuditEvent
from tokens.service_api.service_clients import service_client_create
from tokens.staff_admin.staff_changes import staff_change_record


class Command(BaseCommand):
    help = "Create a service client and print its key (shown only this once; only a digest is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Recorded as the actor in the audit trail.")
        parser.add_argument("--audience", action="append", required=True, help="Repeat for each audience.")
        parser.add_argument(
            "--partner", action="append", default=[], help="Partner tenant id; repeat. None: all."
        )
        parser.add_argument(
            "--cidr", action="append", default=[], help="Allowed source network; repeat. None: any."
        )
        parser.add_argument("--rate-limit", type=int, default=600, help="Requests per minute (default 600).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                client, key = service_client_create(
                    name=options["name"],
                    audiences=options["audience"],
                    partner_tenant_ids=options["partner"],
                    cidrs=options["cidr"],
                    rate_limit_per_minute=options["rate_limit"],
                )
                staff_change_record(
                    actor=Actor.system("manage.py create_service_client"),
                    action=AuditEvent.Action.SERVICE_CLIENT_CREATED,
                    subject=client,
                    changes=f"audiences: {client.audiences}; partners: {options['partner']}; "
                    f"cidrs: {client.cidrs}; rate_limit_per_minute: {client.rate_limit_per_minute}",
                )
        except (ValidationError, ValueError) as error:
            raise CommandError(str(error)) from error
        self.stderr.write(f"Created service client {client.name}. Its key, shown only this once:")
        self.stdout.write(key)
