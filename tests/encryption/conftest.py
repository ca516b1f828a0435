from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tokens.encryption.keyset import keyset_cache_clear, keyset_file_write, keyset_generate


@pytest.fixture
def keyset_file(tmp_path: Path) -> Iterator[Path]:
    """A fresh one-key keyset in a file, configured as the process keyset for the test."""
    path = tmp_path / "keyset.json"
    keyset_file_write(path=path, keyset_json=keyset_generate(), overwrite=False)
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=str(path)):
        yield path
    keyset_cache_clear()


def raw_column(table: str, column: str, pk: Any) -> str:
    """The value as the database holds it, read past the ORM."""
    from django.db import connection

    with connection.cursor() as cursor:
        pk_sql = pk.hex if connection.vendor == "sqlite" and hasattr(pk, "hex") else pk
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk_sql])  # noqa: S608
        (value,) = cursor.fetchone()
    return str(value)
