from __future__ import annotations

import pytest

from tests.encryption_app.models import Vault
from tests.fixtures.database import pg_dump_text

CANARY = "canary-in-the-dump-5d21"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed, so that pg_dump's own connection sees the row
def test_a_database_dump_holds_no_plaintext(postgres_only: None) -> None:
    vault = Vault.objects.create(name="dumped-row", secret=CANARY, payload={"token": CANARY})
    dump = pg_dump_text()
    # The row is in the dump (so the absence below means something), its secrets only as ciphertext.
    assert "dumped-row" in dump
    assert str(vault.pk) in dump
    assert "tink1:" in dump
    assert CANARY not in dump
