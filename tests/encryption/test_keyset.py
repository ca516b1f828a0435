from __future__ import annotations

import json
import stat
from io import StringIO
from pathlib import Path

import pytest
import tink
from django.core.management import CommandError, call_command
from django.test import override_settings
from tink import aead, secret_key_access

from tokens.encryption.errors import KeysetInvalid, KeysetMissing
from tokens.encryption.keyset import keyset_generate, keyset_get, keyset_key_add, keyset_parse


def _keyset_of(template: object) -> str:
    handle = tink.new_keyset_handle(template)
    return tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)


def test_generate_keyset_writes_a_private_file_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    path = tmp_path / "keyset.json"
    out = StringIO()
    call_command("generate_keyset", output=path, stdout=out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyset = keyset_parse(keyset_json=path.read_text())
    assert f"primary key {keyset.primary_key_id}" in out.getvalue()
    assert json.loads(path.read_text())["key"][0]["keyData"]["value"] not in out.getvalue()

    with pytest.raises(CommandError, match="exists; pass --force"):
        call_command("generate_keyset", output=path)
    assert keyset_parse(keyset_json=path.read_text()).primary_key_id == keyset.primary_key_id

    call_command("generate_keyset", output=path, force=True, stdout=StringIO())
    assert keyset_parse(keyset_json=path.read_text()).primary_key_id != keyset.primary_key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_adding_a_key_makes_it_primary_and_keeps_the_old_ones() -> None:
    first = keyset_generate()
    second, new_key_id = keyset_key_add(keyset_json=first)
    old = keyset_parse(keyset_json=first)
    new = keyset_parse(keyset_json=second)
    assert new.primary_key_id == new_key_id != old.primary_key_id
    assert new.key_ids == old.key_ids | {new_key_id}
    # The old key still decrypts what it encrypted.
    assert new.primitive.decrypt(old.primitive.encrypt(b"x", b"ad"), b"ad") == b"x"


def test_a_missing_keyset_is_a_clear_error() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=""):
        with pytest.raises(KeysetMissing, match="generate_keyset"):
            keyset_get()
    with override_settings(
        FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE="/nonexistent/keyset.json"
    ):
        with pytest.raises(KeysetMissing, match="Cannot read"):
            keyset_get()


@pytest.mark.parametrize(
    ("keyset_json", "message"),
    [
        ("not json", "not a Tink JSON keyset"),
        (_keyset_of(aead.aead_key_templates.AES128_GCM), "not a 256-bit key"),
        (_keyset_of(aead.aead_key_templates.AES256_GCM_RAW), "no Tink output prefix"),
        (_keyset_of(aead.aead_key_templates.AES256_CTR_HMAC_SHA256), "not an AES-GCM key"),
    ],
)
def test_a_keyset_that_is_not_aes256_gcm_with_prefix_is_refused(keyset_json: str, message: str) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYSET=keyset_json):
        with pytest.raises(KeysetInvalid, match=message):
            keyset_get()


def test_both_keyset_settings_at_once_are_refused(tmp_path: Path) -> None:
    with override_settings(
        FIELD_ENCRYPTION_KEYSET=keyset_generate(), FIELD_ENCRYPTION_KEYSET_FILE=str(tmp_path)
    ):
        with pytest.raises(KeysetInvalid, match="set only one"):
            keyset_get()


def test_the_keyset_never_derives_from_secret_key() -> None:
    before = keyset_get().primary_key_id
    with override_settings(SECRET_KEY="another-secret-key-" * 4):
        assert keyset_get().primary_key_id == before
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=""):
        with pytest.raises(KeysetMissing):
            keyset_get()
