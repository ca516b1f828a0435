from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.encryption.keyset import keyset_file_write, keyset_generate, keyset_parse


class Command(BaseCommand):
    help = "Write a new Tink keyset (one AES-256-GCM key) to a file readable by its owner only."
    # Needs no database and must run before a keyset exists (system check E010 would refuse).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", required=True, type=Path, help="where to write the keyset (mode 0600)"
        )
        parser.add_argument("--force", action="store_true", help="replace an existing file")

    def handle(self, *args: Any, output: Path, force: bool, **options: Any) -> None:
        keyset_json = keyset_generate()
        try:
            keyset_file_write(path=output, keyset_json=keyset_json, overwrite=force)
        except FileExistsError:
            raise CommandError(
                f"{output} exists; pass --force to replace it (its keys would be lost)."
            ) from None
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}.") from None
        primary = keyset_parse(keyset_json=keyset_json).primary_key_id
        self.stdout.write(f"Wrote a keyset with primary key {primary} to {output} (mode 0600).")
        self.stdout.write(f"Set FIELD_ENCRYPTION_KEYSET_FILE={output.resolve()}")
