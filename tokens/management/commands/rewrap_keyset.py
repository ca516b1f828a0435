from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.credentials.keyvault import KeyVaultError
from tokens.encryption.errors import KeysetInvalid
from tokens.encryption.keyset import keyset_cache_clear, keyset_file_write
from tokens.encryption.wrapped import keyset_is_wrapped, keyset_rewrap, keyset_wrapping_key_id


class Command(BaseCommand):
    help = (
        "Re-wrap the Key Vault-wrapped keyset file under another Key Vault key or key version. Only the "
        "wrapped data key changes: the keyset and every encrypted row stay as they are."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--key-id",
            required=True,
            help="the new wrapping key: https://<vault>/keys/<name> (its newest version) or .../<version>",
        )
        parser.add_argument(
            "--file",
            type=Path,
            default=None,
            help="the wrapped keyset file (default FIELD_ENCRYPTION_KEYSET_FILE)",
        )

    def handle(self, *args: Any, key_id: str, file: Path | None, **options: Any) -> None:
        path = file or (
            Path(settings.FIELD_ENCRYPTION_KEYSET_FILE) if settings.FIELD_ENCRYPTION_KEYSET_FILE else None
        )
        if path is None:
            raise CommandError("Name the wrapped keyset with --file or FIELD_ENCRYPTION_KEYSET_FILE.")
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        if not keyset_is_wrapped(current):
            raise CommandError(f"{path} is not a wrapped keyset (generate_keyset --wrap-with writes one).")
        try:
            rewrapped = keyset_rewrap(wrapped_json=current, key_id=key_id)
        except (KeyVaultError, KeysetInvalid) as error:
            raise CommandError(str(error)) from None
        keyset_file_write(path=path, keyset_json=rewrapped, overwrite=True)
        keyset_cache_clear()
        old, new = (
            keyset_wrapping_key_id(wrapped_json=current),
            keyset_wrapping_key_id(wrapped_json=rewrapped),
        )
        self.stdout.write(f"Re-wrapped {path}: was {old}, now {new}. No row was re-encrypted.")
