from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.encryption.keyset import keyset_get
from tokens.encryption.rotation import ColumnRotationReport, encryption_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column to the primary key, in batches. Safe while the application "
        "serves traffic; re-run it after an interruption or when rows remain."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.stdout.write(f"Re-encrypting to primary key {keyset_get().primary_key_id}.")
        reports = encryption_keys_rotate(batch_size=batch_size)
        for report in reports:
            self.stdout.write(_report_line(report))
        if not reports:
            self.stdout.write("No model has an encrypted column.")
        if any(report.failed for report in reports):
            raise CommandError(
                "Some rows did not decrypt (see the log for their pks); they keep their old key."
            )
        if any(report.remaining for report in reports):
            self.stdout.write(
                "Rows remain on old keys (locked or written concurrently): run the command again."
            )


def _report_line(report: ColumnRotationReport) -> str:
    return (
        f"{report.column}: scanned {report.scanned}, re-encrypted {report.reencrypted}, "
        f"already current {report.already_current}, skipped (changed concurrently) {report.skipped}, "
        f"failed {report.failed}, remaining on old keys {report.remaining}"
    )
