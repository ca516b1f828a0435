"""Drop the audit trail's monthly partitions older than AUDIT_RETENTION_DAYS (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from tokens.audit import Actor
from tokens.audit_partitions import audit_is_partitioned, audit_retention_apply


class Command(BaseCommand):
    help = (
        "Detach and drop every audit partition whose events are all older than AUDIT_RETENTION_DAYS, "
        "writing an audit event for each first. Rows are never deleted one by one (append-only)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="list what would be dropped, drop nothing")

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        if not audit_is_partitioned():
            self.stdout.write("The audit table is not partitioned (SQLite demo): nothing to drop.")
            return
        report = audit_retention_apply(actor=Actor.system("manage.py audit_retention"), dry_run=dry_run)
        verb = "would drop" if dry_run else "dropped"
        self.stdout.write(
            f"Retention {settings.AUDIT_RETENTION_DAYS} days: events before {report.cutoff:%Y-%m-%d %H:%M} UTC."
        )
        for name in report.dropped:
            self.stdout.write(f"{verb} {name}")
        self.stdout.write(f"{len(report.dropped)} partition(s) {verb}, {len(report.kept)} kept.")
