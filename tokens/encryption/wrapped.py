"""A Tink keyset wrapped by an Azure Key Vault key (envelope encryption).

The keyset JSON is encrypted with a random 256-bit data key (AES-256-GCM); the data key is wrapped by
the Key Vault key (RSA-OAEP-256, `wrapKey`), and only its wrapped form is stored. Loading the
keyset unwraps the data key in Key Vault (`unwrapKey`) and decrypts the keyset in memory; nothing
unwrapped is ever written. Re-wrapping under a new key version changes only the wrapped data key:
the keyset, and so every encrypted row, stays as it is.

The file (or FIELD_ENCRYPTION_KEYSET's value) is JSON: {"format": "sam-wrapped-keyset/1",
"kid": <versioned Key Vault key id>, "alg": "RSA-OAEP-256", "wrapped_key", "nonce", "ciphertext"}
(base64). RSA-OAEP-256 alone could not wrap the keyset: a 2048-bit key wraps at most 190 bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokens.credentials.keyvault import key_unwrap, key_wrap
from tokens.encryption.errors import KeysetInvalid

FORMAT = "sam-wrapped-keyset/1"
ALGORITHM = "RSA-OAEP-256"
# Binds the ciphertext to this format: a wrapped keyset decrypts as nothing else.
_AAD = FORMAT.encode()


def keyset_is_wrapped(text: str) -> bool:
    try:
        document = json.loads(text)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("format") == FORMAT


def keyset_wrap(*, keyset_json: str, key_id: str) -> str:
    """The wrapped form of a cleartext keyset, under the Key Vault key `key_id`."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(nonce, keyset_json.encode(), _AAD)
    kid, wrapped = key_wrap(key_id=key_id, key=data_key)
    return _document(kid=kid, wrapped=wrapped, nonce=nonce, ciphertext=ciphertext)


def keyset_unwrap(*, wrapped_json: str) -> str:
    """The cleartext keyset JSON, for memory only. Raises KeyVaultRefused / KeyVaultUnavailable
    when Key Vault does not unwrap, KeysetInvalid when the document is malformed."""
    document = _parsed(wrapped_json)
    data_key = key_unwrap(key_id=document["kid"], wrapped=document["wrapped_key"])
    try:
        return AESGCM(data_key).decrypt(document["nonce"], document["ciphertext"], _AAD).decode()
    except (InvalidTag, ValueError):
        raise KeysetInvalid("The wrapped keyset does not decrypt with the key Key Vault unwrapped.") from None


def keyset_rewrap(*, wrapped_json: str, key_id: str) -> str:
    """The same keyset, its data key unwrapped by the old key version and wrapped by `key_id` (a
    versionless id means the key's newest version). The keyset ciphertext is kept as it is."""
    document = _parsed(wrapped_json)
    data_key = key_unwrap(key_id=document["kid"], wrapped=document["wrapped_key"])
    kid, wrapped = key_wrap(key_id=key_id, key=data_key)
    return _document(kid=kid, wrapped=wrapped, nonce=document["nonce"], ciphertext=document["ciphertext"])


def keyset_cleartext(*, text: str) -> str:
    """The cleartext keyset of a keyset file's content, wrapped or not (for the key-edit commands)."""
    return keyset_unwrap(wrapped_json=text) if keyset_is_wrapped(text) else text


def keyset_stored_like(*, original: str, keyset_json: str) -> str:
    """An edited keyset in the form its file had: wrapped again by the same Key Vault key version
    if the original was wrapped, cleartext otherwise."""
    if not keyset_is_wrapped(original):
        return keyset_json
    return keyset_wrap(keyset_json=keyset_json, key_id=keyset_wrapping_key_id(wrapped_json=original))


def keyset_wrapping_key_id(*, wrapped_json: str) -> str:
    return str(_parsed(wrapped_json)["kid"])


def _document(*, kid: str, wrapped: bytes, nonce: bytes, ciphertext: bytes) -> str:
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731 - one-line helper
    return json.dumps(
        {
            "format": FORMAT,
            "kid": kid,
            "alg": ALGORITHM,
            "wrapped_key": encode(wrapped),
            "nonce": encode(nonce),
            "ciphertext": encode(ciphertext),
        },
        indent=2,
    )


def _parsed(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT or document.get("alg") != ALGORITHM:
            raise ValueError
        return {
            "kid": str(document["kid"]),
            **{
                name: base64.b64decode(document[name], validate=True)
                for name in ("wrapped_key", "nonce", "ciphertext")
            },
        }
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise KeysetInvalid(f"The wrapped keyset is not a {FORMAT} document.") from None
