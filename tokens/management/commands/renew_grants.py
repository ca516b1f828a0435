"""Renew grants now, synchronously, through the same service the Celery tasks run.

manage.py renew_grants --due                 # what the next sweeps would pick (default)
manage.py renew_grants --all                 # every issuable grant, due or not
manage.py renew_grants --partner TENANT_ID   # that partner's grant(s), due or not
manage.py renew_grants --due --dry-run       # list only
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from tokens.audit import Actor
from tokens.renewal.sweep import grant_renew, grants_due_list


class Command(BaseCommand):
    help = "Redeem grants' refresh tokens now (the renewal engine, without Celery)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--due", action="store_true", help="Grants due for renewal (default).")
        which.add_argument("--all", action="store_true", help="Every issuable grant, due or not.")
        which.add_argument("--partner", metavar="TENANT_ID", help="The grants of one partner tenant.")
        parser.add_argument("--dry-run", action="store_true", help="List the grants, redeem nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        force = bool(options["all"] or options["partner"])
        grants = grants_due_list(
            now=timezone.now(), partner_tenant_id=options["partner"], include_not_due=force
        ).values_list("pk", "partner__display_name", "partner__tenant_id")
        actor = Actor.system("renew_grants command")
        counts: dict[str, int] = {}
        for grant_id, partner_name, tenant_id in grants:
            label = f"{grant_id} {partner_name} ({tenant_id})"
            if options["dry_run"]:
                self.stdout.write(f"would renew {label}")
                continue
            result = grant_renew(grant_id=str(grant_id), actor=actor, force=force)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            code = f" {result.failure_code}" if result.failure_code else ""
            self.stdout.write(f"{result.outcome}{code}: {label}")
        summary = ", ".join(f"{outcome} {n}" for outcome, n in sorted(counts.items())) or "nothing redeemed"
        self.stdout.write(self.style.SUCCESS(summary))
