"""Every failure of encryption at rest is one of these; none of their messages carries key material
or plaintext."""

from __future__ import annotations

from django.core.exceptions import FieldError, ImproperlyConfigured


class EncryptionError(Exception):
    """Base class: catch this to handle any encryption-at-rest failure."""


class KeysetMissing(EncryptionError, ImproperlyConfigured):
    """No keyset is configured, or the configured keyset file cannot be read."""


class KeysetInvalid(EncryptionError, ImproperlyConfigured):
    """The configured keyset is not a Tink JSON keyset of AES-256-GCM keys with Tink prefixes."""


class KeysetUnavailable(EncryptionError, ImproperlyConfigured):
    """The keyset is wrapped by a Key Vault key and Key Vault refused or could not be reached to
    unwrap it; the message names the key and what Key Vault answered."""


class DecryptionFailed(EncryptionError):
    """A ciphertext did not decrypt: its key is not in the keyset, or it was tampered with or moved
    to another row, column or table (the associated data no longer matches)."""


class EncryptedFieldMisuse(EncryptionError, FieldError):
    """An operation that cannot work on an encrypted column: a lookup on its plaintext, or a write
    that bypasses Model.save()/bulk_create() and so cannot bind the ciphertext to its row."""
