"""The stored form of a ciphertext, and encryption/decryption with the configured keyset.

Stored form: ``tink1:<key id, 8 hex digits>:<base64 of the rest of Tink's ciphertext>``.
Tink's ciphertext is ``0x01 || key id (4 bytes, big-endian) || IV || ciphertext || tag``; the key id is
lifted out of the base64 into hex so that SQL can select rows by key (``LIKE 'tink1:1a2b3c4d:%'``),
which is how rotation and key retirement find the rows still on an old key without decrypting
anything. It is stored once only: decryption rebuilds Tink's prefix from it, so an edited key id
fails to decrypt. Text rather than bytes: the same column type on PostgreSQL and SQLite, readable in
psql and dumps, and the ``tink1`` marker leaves room for another format later.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import tink

from tokens.encryption.errors import DecryptionFailed
from tokens.encryption.keyset import keyset_get

MARKER = "tink1"
_TINK_PREFIX_BYTE = b"\x01"
_TINK_PREFIX_SIZE = 5
_STORED = re.compile(rf"{MARKER}:(?P<key_id>[0-9a-f]{{8}}):(?P<body>[A-Za-z0-9+/=]+)\Z")


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """A ciphertext as the database holds it. Deliberately not a str, and its str() is a mask, so
    it cannot be mistaken for, or rendered as, plaintext (e.g. from QuerySet.values())."""

    stored: str

    @property
    def key_id(self) -> int:
        return key_id_of(self.stored)

    def __str__(self) -> str:
        return f"<Ciphertext key_id={self.key_id}>"

    __repr__ = __str__


def key_id_prefix(key_id: int) -> str:
    """The start of every stored ciphertext made with `key_id`."""
    return f"{MARKER}:{key_id:08x}:"


def key_id_of(stored: str) -> int:
    return int(_match(stored).group("key_id"), 16)


def ciphertext_encrypt(*, plaintext: bytes, associated_data: bytes) -> Ciphertext:
    raw = keyset_get().primitive.encrypt(plaintext, associated_data)
    # AES-GCM keys are validated to carry the TINK prefix, so raw always starts with 0x01 + key id.
    key_id = raw[1:_TINK_PREFIX_SIZE].hex()
    body = base64.b64encode(raw[_TINK_PREFIX_SIZE:]).decode("ascii")
    return Ciphertext(f"{MARKER}:{key_id}:{body}")


def ciphertext_decrypt(*, ciphertext: Ciphertext, associated_data: bytes) -> bytes:
    match = _match(ciphertext.stored)
    try:
        body = base64.b64decode(match.group("body"), validate=True)
    except binascii.Error:
        raise DecryptionFailed("The stored ciphertext is not valid base64.") from None
    raw = _TINK_PREFIX_BYTE + bytes.fromhex(match.group("key_id")) + body
    keyset = keyset_get()
    try:
        return keyset.primitive.decrypt(raw, associated_data)
    except tink.TinkError:
        key_id = int(match.group("key_id"), 16)
        if key_id not in keyset.key_ids:
            reason = f"its key {key_id} is not in the configured keyset (wrong or outdated keyset?)"
        else:
            reason = "it was tampered with or moved from another row, column or table"
        raise DecryptionFailed(
            f"Ciphertext for {associated_data.decode('utf-8', 'replace')} does not decrypt: {reason}."
        ) from None


def _match(stored: str) -> re.Match[str]:
    match = _STORED.match(stored)
    if match is None:
        raise DecryptionFailed(f"The stored value is not a {MARKER} ciphertext.")
    return match
