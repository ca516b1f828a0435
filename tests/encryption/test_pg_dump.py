from __future__ import annotations

import os
import subprocess

import pytest
from django.db import connection

from tests.encryption_app.models import Vault

CANARY = "canary-in-the-dump-5d21"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed, so that pg_dump's own connection sees the row
def test_a_database_dump_holds_no_plaintext(postgres_only: None) -> None:
    vault = Vault.objects.create(name="dumped-row", secret=CANARY, payload={"token": CANARY})
    db = connection.settings_dict
    command = ["pg_dump", "--data-only", "-h", db["HOST"], "-U", db["USER"], db["NAME"]]
    if db["PORT"]:
        command += ["-p", str(db["PORT"])]
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    dump = subprocess.run(command, capture_output=True, text=True, check=True, env=env, timeout=120).stdout
    # The row is in the dump (so the absence below means something), its secrets only as ciphertext.
    assert "dumped-row" in dump
    assert str(vault.pk) in dump
    assert "tink1:" in dump
    assert CANARY not in dump
