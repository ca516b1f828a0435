from __future__ import annotations

import json
import uuid

import pytest
from django.core import serializers
from django.db import connection, transaction
from django.test import override_settings

from tests.encryption.conftest import raw_column
from tests.encryption_app.models import OtherVault, Vault
from tokens.encryption.ciphertext import Ciphertext, key_id_of
from tokens.encryption.errors import DecryptionFailed, EncryptedFieldMisuse
from tokens.encryption.keyset import keyset_generate, keyset_get

pytestmark = pytest.mark.django_db

TOKEN = "0.AAAA-refresh-token-" + "x" * 1500
PAYLOAD = {"scopes": ["https://graph.microsoft.com/.default"], "tenant": "contoso", "n": 1, "ok": True}


def _reloaded(vault: Vault) -> Vault:
    return Vault.objects.get(pk=vault.pk)


def test_text_and_json_round_trip_through_the_database() -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN, payload=PAYLOAD)
    loaded = _reloaded(vault)
    assert loaded.secret == TOKEN
    assert loaded.payload == PAYLOAD


@pytest.mark.parametrize("payload", [{}, [], "", 0, None])
def test_empty_values_round_trip(payload: object) -> None:
    vault = Vault.objects.create(name="empty", secret="", payload=payload)
    loaded = _reloaded(vault)
    assert loaded.secret == ""
    assert loaded.payload == payload
    # Empty values are encrypted too: the column does not reveal that the secret is empty.
    assert raw_column("encryption_app_vault", "secret", vault.pk).startswith("tink1:")


def test_the_column_holds_a_ciphertext_carrying_the_primary_key_id_and_no_plaintext() -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN, payload=PAYLOAD)
    stored = raw_column("encryption_app_vault", "secret", vault.pk)
    primary = keyset_get().primary_key_id
    assert stored.startswith(f"tink1:{primary:08x}:")
    assert key_id_of(stored) == primary
    assert "refresh-token" not in stored
    assert "contoso" not in raw_column("encryption_app_vault", "payload", vault.pk)


def test_in_place_changes_to_a_json_value_are_saved() -> None:
    vault = Vault.objects.create(name="a", payload={"a": 1})
    loaded = _reloaded(vault)
    loaded.payload["b"] = 2
    loaded.save()
    assert _reloaded(vault).payload == {"a": 1, "b": 2}


def test_saving_an_untouched_row_keeps_its_ciphertext() -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN)
    before = raw_column("encryption_app_vault", "secret", vault.pk)
    loaded = _reloaded(vault)
    loaded.name = "b"
    loaded.save()
    assert raw_column("encryption_app_vault", "secret", vault.pk) == before


def test_bulk_create_encrypts_each_row_for_itself() -> None:
    vaults = Vault.objects.bulk_create([Vault(name=str(n), secret=f"s{n}") for n in range(3)])
    assert sorted(v.secret for v in Vault.objects.filter(pk__in=[v.pk for v in vaults])) == ["s0", "s1", "s2"]


def test_values_never_returns_ciphertext_as_if_it_were_plaintext() -> None:
    Vault.objects.create(name="a", secret=TOKEN)
    [value] = Vault.objects.values_list("secret", flat=True)
    assert isinstance(value, Ciphertext)
    assert not isinstance(value, str)
    assert str(value).startswith("<Ciphertext key_id=")


def test_serializers_emit_ciphertext_only() -> None:
    Vault.objects.create(name="a", secret=TOKEN, payload=PAYLOAD)
    dumped = serializers.serialize("json", Vault.objects.all())
    assert "refresh-token" not in dumped
    assert "contoso" not in dumped
    assert json.loads(dumped)[0]["fields"]["secret"].startswith("tink1:")


@pytest.mark.parametrize(
    "lookup",
    [
        {"secret": TOKEN},
        {"secret__exact": TOKEN},
        {"secret__contains": "refresh"},
        {"secret__icontains": "refresh"},
        {"secret__startswith": "0."},
        {"secret__in": [TOKEN]},
        {"secret__gt": ""},
        {"payload__tenant": "contoso"},
        {"payload__contains": {"tenant": "contoso"}},
    ],
)
def test_lookups_on_encrypted_columns_raise_a_clear_error(lookup: dict[str, object]) -> None:
    with pytest.raises(EncryptedFieldMisuse, match="is encrypted: the database cannot compare its plaintext"):
        Vault.objects.filter(**lookup)


def test_isnull_and_key_id_lookups_are_allowed() -> None:
    with_payload = Vault.objects.create(name="a", payload={"x": 1})
    Vault.objects.create(name="b", payload=None)
    assert list(Vault.objects.filter(payload__isnull=False)) == [with_payload]
    assert Vault.objects.filter(secret__key_id=keyset_get().primary_key_id).count() == 2
    assert Vault.objects.filter(secret__key_id=keyset_get().primary_key_id + 1).count() == 0


@pytest.mark.parametrize("write", ["update", "bulk_update"])
def test_writes_that_cannot_bind_the_row_refuse_plaintext(write: str) -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN)
    # atomic: a failed write marks the enclosing (test) transaction for rollback.
    with pytest.raises(EncryptedFieldMisuse, match="outside Model.save"), transaction.atomic():
        if write == "update":
            Vault.objects.filter(pk=vault.pk).update(secret="plain")
        else:
            vault.secret = "plain"
            Vault.objects.bulk_update([vault], ["secret"])
    assert _reloaded(vault).secret == TOKEN


def test_a_ciphertext_copied_to_another_row_fails_to_decrypt() -> None:
    source = Vault.objects.create(name="a", secret=TOKEN)
    target = Vault.objects.create(name="b", secret="other")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE encryption_app_vault SET secret = %s WHERE name = 'b'",
            [raw_column("encryption_app_vault", "secret", source.pk)],
        )
    with pytest.raises(DecryptionFailed, match=f"encryption_app_vault.secret.{target.pk}.*moved"):
        _ = _reloaded(target).secret


def test_a_ciphertext_copied_to_another_column_fails_to_decrypt() -> None:
    # A JSON string value, so that only the associated data (not the JSON parsing) can refuse it.
    vault = Vault.objects.create(name="a", secret=json.dumps("token"), payload="x")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE encryption_app_vault SET payload = secret")
    with pytest.raises(DecryptionFailed, match="moved"):
        _ = _reloaded(vault).payload
    assert _reloaded(vault).secret == json.dumps("token")


def test_a_ciphertext_copied_to_another_table_fails_to_decrypt() -> None:
    # Same column name and same row id, so that only the table name differs in the associated data.
    vault = Vault.objects.create(name="a", secret=TOKEN)
    other = OtherVault.objects.create(public_id=vault.pk, secret="other")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE encryption_app_othervault SET secret = %s",
            [raw_column("encryption_app_vault", "secret", vault.pk)],
        )
    with pytest.raises(DecryptionFailed, match="moved"):
        _ = OtherVault.objects.get(pk=other.pk).secret


def test_an_edited_key_id_fails_to_decrypt() -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN)
    stored = raw_column("encryption_app_vault", "secret", vault.pk)
    forged = f"tink1:{(key_id_of(stored) ^ 1):08x}:{stored.split(':', 2)[2]}"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE encryption_app_vault SET secret = %s", [forged])
    with pytest.raises(DecryptionFailed):
        _ = _reloaded(vault).secret


def test_saving_a_row_whose_row_id_changed_under_an_untouched_ciphertext_fails() -> None:
    vault = OtherVault.objects.get(pk=OtherVault.objects.create(secret=TOKEN).pk)
    vault.public_id = uuid.uuid4()
    with pytest.raises(DecryptionFailed):
        vault.save()


def test_a_wrong_keyset_fails_loudly() -> None:
    vault = Vault.objects.create(name="a", secret=TOKEN)
    with override_settings(FIELD_ENCRYPTION_KEYSET=keyset_generate()):
        with pytest.raises(DecryptionFailed, match="not in the configured keyset"):
            _ = _reloaded(vault).secret
