"""The Tink keyset: loaded from settings (never from SECRET_KEY), its AEAD primitive cached per
process, and the keyset edits behind the key-management commands.

Only AES-256-GCM keys with Tink's output prefix are accepted: the prefix puts the key id in every
ciphertext, which is what lets rotation find the rows still on an old key.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tink
from django.conf import settings
from django.dispatch import receiver
from django.test.signals import setting_changed
from tink import aead, secret_key_access
from tink.proto import aes_gcm_pb2, tink_pb2

from tokens.credentials.keyvault import KeyVaultError
from tokens.encryption.errors import KeysetInvalid, KeysetMissing, KeysetUnavailable
from tokens.encryption.wrapped import keyset_is_wrapped, keyset_unwrap

aead.register()

AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
AES256_KEY_BYTES = 32
KEYSET_SETTINGS = ("FIELD_ENCRYPTION_KEYSET", "FIELD_ENCRYPTION_KEYSET_FILE")
# A new keyset cannot read what another encrypted: the hints name the keyset the data needs.
KEYSET_NOT_CONFIGURED_HINT = (
    "Set FIELD_ENCRYPTION_KEYSET_FILE to the keyset that encrypted this database (a new keyset cannot "
    "read its data), or FIELD_ENCRYPTION_KEYSET to its content. A new deployment creates its keyset "
    "with `python manage.py generate_keyset --output /etc/samcp/keyset.json`."
)
DEMO_KEYSET_MISSING_HINT = (
    "This is the demo's keyset: `make demo` (or `python manage.py demo --setup-only`) creates it, with "
    "the demo data it encrypts. For other data, set FIELD_ENCRYPTION_KEYSET_FILE to the keyset that "
    "encrypted it."
)


@dataclass(frozen=True)
class Keyset:
    primitive: aead.Aead
    primary_key_id: int
    key_ids: frozenset[int]


def keyset_generate() -> str:
    """A new cleartext JSON keyset holding one AES-256-GCM key."""
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    return tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)


def keyset_key_add(*, keyset_json: str) -> tuple[str, int]:
    """Add a new AES-256-GCM key and make it primary; the old keys stay for decryption.
    Returns the new keyset and the new key's id."""
    keyset = _proto_parse(keyset_json)
    existing = {key.key_id for key in keyset.key}
    # Key ids are random 32-bit numbers: draw again on the (unlikely) collision.
    new_key = _proto_parse(keyset_generate()).key[0]
    while new_key.key_id in existing:
        new_key = _proto_parse(keyset_generate()).key[0]
    keyset.key.append(new_key)
    keyset.primary_key_id = new_key.key_id
    return _proto_serialize(keyset), new_key.key_id


def keyset_key_remove(*, keyset_json: str, key_id: int) -> str:
    """The keyset without `key_id`. Refuses the primary key and unknown ids; whether any row still
    uses the key is the caller's check (see rotation.encryption_key_usage_count)."""
    keyset = _proto_parse(keyset_json)
    if key_id == keyset.primary_key_id:
        raise ValueError(f"Key {key_id} is the primary key; add a new primary key before removing it.")
    kept = [key for key in keyset.key if key.key_id != key_id]
    if len(kept) == len(keyset.key):
        raise ValueError(f"Key {key_id} is not in the keyset.")
    del keyset.key[:]
    keyset.key.extend(kept)
    return _proto_serialize(keyset)


def keyset_parse(*, keyset_json: str) -> Keyset:
    """Validate a cleartext JSON keyset and build its AEAD primitive."""
    proto = _proto_parse(keyset_json)
    for key in proto.key:
        _key_validate(key)
    try:
        handle = tink.json_proto_keyset_format.parse(keyset_json, secret_key_access.TOKEN)
        primitive = handle.primitive(aead.Aead)
    except tink.TinkError:
        # The Tink message may quote the keyset; say only what is wrong.
        raise KeysetInvalid(
            "The keyset is not usable by Tink (is its primary key present and enabled?)."
        ) from None
    return Keyset(
        primitive=primitive,
        primary_key_id=proto.primary_key_id,
        key_ids=frozenset(key.key_id for key in proto.key),
    )


def keyset_json_from_settings() -> str:
    """The cleartext keyset JSON; a keyset wrapped by a Key Vault key is unwrapped here, in memory."""
    text = _keyset_text_from_settings()
    if keyset_is_wrapped(text):
        try:
            return keyset_unwrap(wrapped_json=text)
        except KeyVaultError as error:
            raise KeysetUnavailable(
                f"The keyset is wrapped by Key Vault and could not be unwrapped: {error}"
            ) from None
    return text


def _keyset_text_from_settings() -> str:
    inline, path = settings.FIELD_ENCRYPTION_KEYSET, settings.FIELD_ENCRYPTION_KEYSET_FILE
    if inline and path:
        raise KeysetInvalid(
            "Both FIELD_ENCRYPTION_KEYSET and FIELD_ENCRYPTION_KEYSET_FILE are set; set only one."
        )
    if inline:
        return str(inline)
    if not path:
        raise KeysetMissing(f"No encryption keyset is configured. {KEYSET_NOT_CONFIGURED_HINT}")
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        hint = f" {DEMO_KEYSET_MISSING_HINT}" if keyset_file_is_demo(path=path) else ""
        raise KeysetMissing(
            f"Cannot read FIELD_ENCRYPTION_KEYSET_FILE={path}: {exc.strerror}.{hint}"
        ) from None


def keyset_file_is_demo(*, path: str) -> bool:
    """Whether `path` is the demo's keyset (the default outside production, settings.DEMO_KEYSET_FILE)."""
    return Path(path).resolve() == Path(settings.DEMO_KEYSET_FILE).resolve()


@functools.cache
def keyset_get() -> Keyset:
    """The configured keyset, parsed once per process (errors are not cached: each call retries)."""
    return keyset_parse(keyset_json=keyset_json_from_settings())


def keyset_cache_clear() -> None:
    """Forget the cached keyset, so that the next use reads the settings again."""
    keyset_get.cache_clear()


def keyset_file_write(*, path: Path, keyset_json: str, overwrite: bool) -> None:
    """Write a keyset readable by its owner only (0600). Without `overwrite`, an existing file is an
    error; with it, the file is replaced atomically so that a reader never sees half a keyset."""
    if not overwrite:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(keyset_json)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(keyset_json)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@receiver(setting_changed)
def _keyset_reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in KEYSET_SETTINGS:
        keyset_cache_clear()


def _proto_parse(keyset_json: str) -> tink_pb2.Keyset:
    try:
        proto = tink.JsonKeysetReader(keyset_json).read()
    except tink.TinkError:
        raise KeysetInvalid("The keyset is not a Tink JSON keyset.") from None
    if not proto.key:
        raise KeysetInvalid("The keyset holds no key.")
    return proto


def _proto_serialize(keyset: tink_pb2.Keyset) -> str:
    stream = io.StringIO()
    tink.JsonKeysetWriter(stream).write(keyset)
    return stream.getvalue()


def _key_validate(key: tink_pb2.Keyset.Key) -> None:
    if key.key_data.type_url != AES_GCM_TYPE_URL:
        raise KeysetInvalid(f"Key {key.key_id} is not an AES-GCM key.")
    if key.output_prefix_type != tink_pb2.TINK:
        raise KeysetInvalid(f"Key {key.key_id} has no Tink output prefix (the key id in the ciphertext).")
    if len(aes_gcm_pb2.AesGcmKey.FromString(key.key_data.value).key_value) != AES256_KEY_BYTES:
        raise KeysetInvalid(f"Key {key.key_id} is not a 256-bit key.")
