from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.credentials.keyvault import KeyVaultError
from tokens.encryption.keyset import keyset_file_write, keyset_generate, keyset_parse
from tokens.encryption.wrapped import keyset_wrap, keyset_wrapping_key_id


class Command(BaseCommand):
    help = "Write a new Tink keyset (one AES-256-GCM key) to a file readable by its owner only."
    # Needs no database and must run before a keyset exists (system check E010 would refuse).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", required=True, type=Path, help="where to write the keyset (mode 0600)"
        )
        parser.add_argument("--force", action="store_true", help="replace an existing file")
        parser.add_argument(
            "--wrap-with",
            metavar="KEY_ID",
            default="",
            help="a Key Vault key id (https://<vault>/keys/<name>[/<version>]): write the keyset wrapped by it",
        )

    def handle(self, *args: Any, output: Path, force: bool, wrap_with: str, **options: Any) -> None:
        keyset_json = keyset_generate()
        stored = keyset_json
        if wrap_with:
            try:
                stored = keyset_wrap(keyset_json=keyset_json, key_id=wrap_with)
            except KeyVaultError as error:
                raise CommandError(str(error)) from None
        try:
            keyset_file_write(path=output, keyset_json=stored, overwrite=force)
        except FileExistsError:
            raise CommandError(
                f"{output} exists; pass --force to replace it (its keys would be lost)."
            ) from None
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}.") from None
        primary = keyset_parse(keyset_json=keyset_json).primary_key_id
        wrapped = f", wrapped by {keyset_wrapping_key_id(wrapped_json=stored)}" if wrap_with else ""
        self.stdout.write(f"Wrote a keyset with primary key {primary} to {output} (mode 0600){wrapped}.")
        self.stdout.write(f"Set FIELD_ENCRYPTION_KEYSET_FILE={output.resolve()}")
