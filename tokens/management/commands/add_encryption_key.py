from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.credentials.keyvault import KeyVaultError
from tokens.encryption.keyset import keyset_file_write, keyset_key_add
from tokens.encryption.wrapped import keyset_cleartext, keyset_stored_like


class Command(BaseCommand):
    help = "Add a new AES-256-GCM key to a keyset file and make it primary; the old keys are kept."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keyset-file",
            type=Path,
            default=settings.FIELD_ENCRYPTION_KEYSET_FILE or None,
            help="the keyset file to edit in place (default: FIELD_ENCRYPTION_KEYSET_FILE)",
        )

    def handle(self, *args: Any, keyset_file: Path | None, **options: Any) -> None:
        if keyset_file is None:
            raise CommandError("Pass --keyset-file (FIELD_ENCRYPTION_KEYSET_FILE is not set).")
        try:
            original = keyset_file.read_text(encoding="utf-8")
            keyset_json, key_id = keyset_key_add(keyset_json=keyset_cleartext(text=original))
            stored = keyset_stored_like(original=original, keyset_json=keyset_json)
            keyset_file_write(path=keyset_file, keyset_json=stored, overwrite=True)
        except OSError as exc:
            raise CommandError(f"Cannot update {keyset_file}: {exc.strerror}.") from None
        except KeyVaultError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Added key {key_id} to {keyset_file} as the primary key.")
        self.stdout.write(
            "Next: deploy this keyset and restart every process (so that all new writes use the new key), "
            "then run `manage.py rotate_encryption_keys`."
        )
