from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.credentials.keyvault import KeyVaultError
from tokens.encryption.keyset import keyset_file_write, keyset_key_remove
from tokens.encryption.rotation import encryption_key_usage_count
from tokens.encryption.wrapped import keyset_cleartext, keyset_stored_like


class Command(BaseCommand):
    help = (
        "Remove a retired key from a keyset file. Refuses the primary key, and refuses while any row "
        "of any encrypted column still uses the key (those rows could never be decrypted again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key-id", type=int, required=True)
        parser.add_argument(
            "--keyset-file",
            type=Path,
            default=settings.FIELD_ENCRYPTION_KEYSET_FILE or None,
            help="the keyset file to edit in place (default: FIELD_ENCRYPTION_KEYSET_FILE)",
        )

    def handle(self, *args: Any, key_id: int, keyset_file: Path | None, **options: Any) -> None:
        if keyset_file is None:
            raise CommandError("Pass --keyset-file (FIELD_ENCRYPTION_KEYSET_FILE is not set).")
        usage = encryption_key_usage_count(key_id=key_id)
        if usage:
            counts = ", ".join(f"{column}: {count}" for column, count in usage.items())
            raise CommandError(
                f"Key {key_id} still encrypts rows ({counts}); run `manage.py rotate_encryption_keys` first."
            )
        try:
            original = keyset_file.read_text(encoding="utf-8")
            keyset_json = keyset_key_remove(keyset_json=keyset_cleartext(text=original), key_id=key_id)
            stored = keyset_stored_like(original=original, keyset_json=keyset_json)
            keyset_file_write(path=keyset_file, keyset_json=stored, overwrite=True)
        except (ValueError, KeyVaultError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"Cannot update {keyset_file}: {exc.strerror}.") from None
        self.stdout.write(f"Removed key {key_id} from {keyset_file}; deploy it and restart every process.")
