"""A keyset wrapped by a Key Vault key, through the real Azure SDK and the sandbox's Key Vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test.utils import override_settings

from sandbox import demo
from tests.encryption.conftest import raw_column
from tests.encryption_app.models import Vault
from tests.fixtures.keyvault import vault_key_id
from tokens.encryption.errors import KeysetUnavailable
from tokens.encryption.keyset import keyset_cache_clear, keyset_get, keyset_json_from_settings

pytestmark = pytest.mark.django_db


def test_the_wrapped_file_holds_no_keyset_material(wrapped_keyset: Path) -> None:
    document = json.loads(wrapped_keyset.read_text())
    assert document["format"] == "sam-wrapped-keyset/1" and document["alg"] == "RSA-OAEP-256"
    assert "/keys/keyset-wrapping/" in document["kid"]  # versioned: the version that wrapped it
    cleartext = keyset_json_from_settings()
    key_value = json.loads(cleartext)["key"][0]["keyData"]["value"]
    assert key_value not in wrapped_keyset.read_text() and "primaryKeyId" not in wrapped_keyset.read_text()
    assert wrapped_keyset.stat().st_mode & 0o777 == 0o600


def test_rows_round_trip_under_a_wrapped_keyset(wrapped_keyset: Path, keyvault_settings) -> None:
    row = Vault.objects.create(name="a", secret="canary-wrapped-1")
    keyset_cache_clear()
    assert Vault.objects.get(pk=row.pk).secret == "canary-wrapped-1"
    assert keyvault_settings.control.keyvault()["operations"]["keys/unwrap"] >= 2


def test_rewrap_under_a_new_key_version_rewrites_no_row(wrapped_keyset: Path, keyvault_settings) -> None:
    rows = [Vault.objects.create(name=str(n), secret=f"canary-rewrap-{n}") for n in range(5)]
    before = {row.pk: raw_column("encryption_app_vault", "secret", row.pk) for row in rows}
    old_kid = json.loads(wrapped_keyset.read_text())["kid"]
    new_kid = keyvault_settings.control.keyvault_rotate_key(demo.VAULT_WRAPPING_KEY)

    call_command("rewrap_keyset", key_id=vault_key_id(keyvault_settings, demo.VAULT_WRAPPING_KEY))

    assert json.loads(wrapped_keyset.read_text())["kid"] == new_kid != old_kid
    keyset_cache_clear()
    for row in rows:
        assert Vault.objects.get(pk=row.pk).secret == f"canary-rewrap-{row.name}"
        assert raw_column("encryption_app_vault", "secret", row.pk) == before[row.pk]
    # The new file unwraps with the new version alone: the old version may now be disabled.
    keyvault_settings.control.keyvault()  # state readable; the old version is not needed any more
    keyset_cache_clear()
    assert keyset_get().primary_key_id


def test_without_the_role_start_up_names_what_was_refused(wrapped_keyset: Path, keyvault_settings) -> None:
    keyvault_settings.control.keyvault_unassign(demo.HOST_CLIENT_ID)
    keyset_cache_clear()
    with pytest.raises(KeysetUnavailable) as raised:
        keyset_get()
    message = str(raised.value)
    assert "refused unwrapKey" in message and "/keys/keyset-wrapping/" in message and "403" in message


def test_key_vault_down_at_start_up_is_a_clear_error(wrapped_keyset: Path, keyvault_settings) -> None:
    keyvault_settings.control.add_fault("http_503", endpoint="keyvault", count=10)
    keyset_cache_clear()
    with pytest.raises(KeysetUnavailable, match="unwrapKey .* HTTP 503"):
        keyset_get()


def test_an_unreachable_vault_is_a_clear_error(wrapped_keyset: Path) -> None:
    document = json.loads(wrapped_keyset.read_text())
    document["kid"] = "https://127.0.0.1:9/keys/keyset-wrapping/" + "0" * 32
    wrapped_keyset.write_text(json.dumps(document))
    keyset_cache_clear()
    with pytest.raises(KeysetUnavailable, match="unreachable"):
        keyset_get()


def test_generate_keyset_can_wrap(keyvault_settings, tmp_path: Path) -> None:
    output = tmp_path / "new.json"
    call_command(
        "generate_keyset", output=output, wrap_with=vault_key_id(keyvault_settings, demo.VAULT_WRAPPING_KEY)
    )
    assert json.loads(output.read_text())["format"] == "sam-wrapped-keyset/1"
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=str(output)):
        keyset_cache_clear()
        assert keyset_get().primary_key_id
    keyset_cache_clear()


def test_rewrap_refuses_bad_input(wrapped_keyset: Path, keyvault_settings, tmp_path: Path) -> None:
    before = wrapped_keyset.read_text()
    with pytest.raises(CommandError, match="refused wrapKey"):
        call_command("rewrap_keyset", key_id=vault_key_id(keyvault_settings, "no-such-key"))
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    with pytest.raises(CommandError, match="not a wrapped keyset"):
        call_command(
            "rewrap_keyset", key_id=vault_key_id(keyvault_settings, demo.VAULT_WRAPPING_KEY), file=plain
        )
    assert wrapped_keyset.read_text() == before


def test_tink_key_rotation_keeps_the_file_wrapped(wrapped_keyset: Path, keyvault_settings) -> None:
    row = Vault.objects.create(name="old", secret="canary-before-rotation")
    kid = json.loads(wrapped_keyset.read_text())["kid"]
    old_primary = keyset_get().primary_key_id

    call_command("add_encryption_key", keyset_file=wrapped_keyset)

    document = json.loads(wrapped_keyset.read_text())
    assert document["format"] == "sam-wrapped-keyset/1" and document["kid"] == kid
    keyset_cache_clear()
    keyset = keyset_get()
    assert keyset.primary_key_id != old_primary and old_primary in keyset.key_ids
    assert Vault.objects.get(pk=row.pk).secret == "canary-before-rotation"
    call_command("rotate_encryption_keys")
    call_command("remove_encryption_key", key_id=old_primary, keyset_file=wrapped_keyset)
    keyset_cache_clear()
    assert keyset_get().key_ids == {keyset.primary_key_id}
    assert Vault.objects.get(pk=row.pk).secret == "canary-before-rotation"


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "import controlpanel.wsgi"],
        [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--pool", "solo", "-l", "warning"],
    ],
    ids=["web", "worker"],
)
def test_a_process_whose_keyset_key_vault_refuses_does_not_start(
    wrapped_keyset: Path, keyvault_settings, command: list[str]
) -> None:
    keyvault_settings.control.keyvault_unassign(demo.HOST_CLIENT_ID)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlpanel.settings",
        "FIELD_ENCRYPTION_KEYSET": "",
        "FIELD_ENCRYPTION_KEYSET_FILE": str(wrapped_keyset),
        "KEY_VAULT_TENANT_ID": demo.VENDOR_TENANT,
        "KEY_VAULT_CLIENT_ID": demo.HOST_CLIENT_ID,
        "KEY_VAULT_CLIENT_CERTIFICATE_PATH": str(demo.HOST_IDENTITY_PATH),
        "KEY_VAULT_AUTHORITY_HOST": keyvault_settings.base_url,
        "KEY_VAULT_CA_BUNDLE": str(keyvault_settings.ca_bundle),
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert (
        "refused unwrapKey" in done.stderr
        and "/keys/keyset-wrapping/" in done.stderr
        and "403" in done.stderr
    )
