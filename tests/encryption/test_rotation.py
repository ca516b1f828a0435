from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django_otp.oath import totp

from controlpanel.models import StaffTOTPDevice
from tests.encryption_app.models import OtherVault, Vault
from tokens.encryption import rotation
from tokens.encryption.ciphertext import ciphertext_decrypt
from tokens.encryption.keyset import keyset_cache_clear, keyset_get
from tokens.encryption.rotation import encrypted_columns_list, encryption_keys_rotate

pytestmark = pytest.mark.django_db


def _key_ids(path: Path) -> list[int]:
    return [key["keyId"] for key in json.loads(path.read_text())["key"]]


def _add_primary_key(path: Path) -> int:
    call_command("add_encryption_key", keyset_file=path, stdout=StringIO())
    keyset_cache_clear()  # what the restart of every process does after the keyset is deployed
    return keyset_get().primary_key_id


def _rotate(batch_size: int = 2) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", batch_size=batch_size, stdout=out)
    return out.getvalue()


def test_every_encrypted_column_is_discovered() -> None:
    labels = {column.label for column in encrypted_columns_list()}
    assert labels == {
        "encryption_app.Vault.secret",
        "encryption_app.Vault.payload",
        "encryption_app.OtherVault.secret",
        "tokens.ApplicationCredential.secret",
        "tokens.ConsentGrant.refresh_token",
        # Staff TOTP seeds: rotated and retired with the same keyset.
        "controlpanel.StaffTOTPDevice.key",
    }


def test_three_keys_rotated_to_the_primary_then_the_old_keys_retired(keyset_file: Path) -> None:
    key1 = keyset_get().primary_key_id
    on_key1 = [Vault.objects.create(name=f"k1-{n}", secret=f"one-{n}", payload={"n": n}) for n in range(3)]
    key2 = _add_primary_key(keyset_file)
    on_key2 = [Vault.objects.create(name=f"k2-{n}", secret=f"two-{n}", payload=[n]) for n in range(2)]
    other = OtherVault.objects.create(secret="other")
    key3 = _add_primary_key(keyset_file)
    assert len({key1, key2, key3}) == 3
    assert Vault.objects.filter(secret__key_id=key1).count() == 3

    with pytest.raises(
        CommandError, match=rf"Key {key1} still encrypts rows \(encryption_app.Vault.secret: 3"
    ):
        call_command("remove_encryption_key", key_id=key1, keyset_file=keyset_file)

    output = _rotate()

    assert "encryption_app.Vault.secret: scanned 5, re-encrypted 5, already current 0" in output
    assert "encryption_app.OtherVault.secret: scanned 1, re-encrypted 1" in output
    for name in ("secret", "payload"):
        assert Vault.objects.filter(**{f"{name}__key_id": key3}).count() == 5
    for key_id in (key1, key2):
        call_command("remove_encryption_key", key_id=key_id, keyset_file=keyset_file, stdout=StringIO())
    assert _key_ids(keyset_file) == [key3]
    keyset_cache_clear()
    assert keyset_get().key_ids == {key3}
    assert [Vault.objects.get(pk=v.pk).secret for v in on_key1 + on_key2] == [
        "one-0",
        "one-1",
        "one-2",
        "two-0",
        "two-1",
    ]
    assert Vault.objects.get(pk=on_key2[1].pk).payload == [1]
    assert OtherVault.objects.get(pk=other.pk).secret == "other"


def test_a_rerun_touches_nothing(keyset_file: Path) -> None:
    Vault.objects.create(name="a", secret="s")
    _add_primary_key(keyset_file)
    _rotate()
    assert "scanned 0, re-encrypted 0, already current 1" in _rotate()


def test_the_primary_key_cannot_be_removed(keyset_file: Path) -> None:
    with pytest.raises(CommandError, match="is the primary key"):
        call_command("remove_encryption_key", key_id=keyset_get().primary_key_id, keyset_file=keyset_file)


def test_a_value_changed_during_rotation_is_not_overwritten(
    keyset_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = Vault.objects.create(name="a", secret="old value")
    _add_primary_key(keyset_file)

    def decrypt_then_race(**kwargs: object) -> bytes:
        # Another process writes the row between rotation's read and its write.
        concurrent = Vault.objects.get(pk=vault.pk)
        concurrent.secret = "new value"
        concurrent.save()
        return ciphertext_decrypt(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation, "ciphertext_decrypt", decrypt_then_race)
    [report] = [r for r in encryption_keys_rotate(batch_size=10) if r.column == "encryption_app.Vault.secret"]

    assert (report.scanned, report.reencrypted, report.skipped, report.remaining) == (1, 0, 1, 0)
    assert Vault.objects.get(pk=vault.pk).secret == "new value"


def test_staff_totp_seeds_are_rotated_and_still_verify(keyset_file: Path) -> None:
    staff = User.objects.create_superuser("rotated", "rotated@example.invalid", "pw")
    device = StaffTOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    seed = device.key
    new_key = _add_primary_key(keyset_file)
    assert "controlpanel.StaffTOTPDevice.key: scanned 1, re-encrypted 1" in _rotate()
    rotated = StaffTOTPDevice.objects.get(pk=device.pk)
    assert StaffTOTPDevice.objects.filter(key__key_id=new_key).count() == 1
    assert rotated.key == seed
    code = totp(rotated.bin_key, step=rotated.step, t0=rotated.t0, digits=rotated.digits)
    assert rotated.verify_token(f"{code:06d}")
