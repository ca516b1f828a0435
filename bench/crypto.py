"""Encryption-at-rest costs: encrypt/decrypt per value, and rotation throughput on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_crypto python bench/crypto.py [--rows 100000]

Uses the test settings (their throwaway in-memory keyset unless one is configured) and the test
app's Vault model; migrates the database, fills the table, rotates, then empties it again.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402

from tests.encryption_app.models import Vault  # noqa: E402
from tokens.encryption.fields import EncryptedField  # noqa: E402
from tokens.encryption.keyset import keyset_get, keyset_json_from_settings, keyset_key_add  # noqa: E402

VALUES = 2000
TOKEN_CHARS = 1500  # a Microsoft Entra refresh token is about 1.5 KB
JSON_ITEMS = 80  # about 6 KB of JSON


def _median_us(operation: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    timings = []
    for item in inputs:
        start = time.perf_counter_ns()
        operation(item)
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000


def _per_value(field_name: str, values: list[object]) -> tuple[float, float, int]:
    field = Vault._meta.get_field(field_name)
    assert isinstance(field, EncryptedField)
    vaults = [Vault(name="bench") for _ in values]
    pairs = list(zip(vaults, values, strict=True))
    encrypt_us = _median_us(lambda pair: field.encrypt_for(pair[0], pair[1]), pairs)
    stored = [(vault, field.encrypt_for(vault, value)) for vault, value in pairs]
    decrypt_us = _median_us(lambda pair: field.decrypt_for(pair[0], pair[1]), stored)
    return encrypt_us, decrypt_us, len(stored[0][1].stored)


def _json_blob() -> dict[str, object]:
    return {f"k{n}": {"scope": secrets.token_urlsafe(40), "n": n, "ok": True} for n in range(JSON_ITEMS)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    tokens = [secrets.token_urlsafe(TOKEN_CHARS)[:TOKEN_CHARS] for _ in range(VALUES)]
    blobs = [_json_blob() for _ in range(VALUES)]
    for label, field_name, values in (("text ~1.5 KB", "secret", tokens), ("JSON ~6 KB", "payload", blobs)):
        encrypt_us, decrypt_us, stored_len = _per_value(field_name, values)  # type: ignore[arg-type]
        print(
            f"{label}: encrypt {encrypt_us:.1f} µs, decrypt {decrypt_us:.1f} µs "
            f"(median of {VALUES}; stored {stored_len} chars)"
        )

    if connection.vendor != "postgresql":
        sys.exit("rotation bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    call_command("migrate", verbosity=0)
    Vault.objects.all().delete()
    start = time.perf_counter()
    for offset in range(0, args.rows, 5000):
        count = min(5000, args.rows - offset)
        Vault.objects.bulk_create(
            Vault(id=uuid.uuid4(), name="bench", secret=tokens[(offset + n) % VALUES]) for n in range(count)
        )
    print(f"inserted {args.rows} rows in {time.perf_counter() - start:.1f} s")

    new_keyset, new_key_id = keyset_key_add(keyset_json=keyset_json_from_settings())
    with override_settings(FIELD_ENCRYPTION_KEYSET=new_keyset, FIELD_ENCRYPTION_KEYSET_FILE=""):
        assert keyset_get().primary_key_id == new_key_id
        out = StringIO()
        start = time.perf_counter()
        call_command("rotate_encryption_keys", batch_size=args.batch_size, stdout=out)
        elapsed = time.perf_counter() - start
        rotated = Vault.objects.filter(secret__key_id=new_key_id).count()
    print(out.getvalue().strip())
    print(
        f"rotate_encryption_keys: {rotated} rows in {elapsed:.1f} s = {rotated / elapsed:,.0f} rows/s "
        f"(batch size {args.batch_size}; PostgreSQL {connection.pg_version})"  # type: ignore[attr-defined]
    )
    Vault.objects.all().delete()


if __name__ == "__main__":
    main()
