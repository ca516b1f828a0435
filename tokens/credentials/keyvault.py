"""The panel's one door to Azure Key Vault, through Microsoft's own clients (azure-identity,
azure-keyvault-keys, azure-keyvault-secrets): wrap and unwrap (the keyset's data key), sign (the
application's client assertions) and secret reads (the application's client secret).

The panel reaches Key Vault as its host's identity: a managed identity in production (no secret
anywhere), or, where there is none (the sandbox, tests), an app registration's certificate file
(`KEY_VAULT_CLIENT_CERTIFICATE_PATH`). Only documented SDK options are used: authority host, CA
bundle (`connection_verify`), instance discovery off for a non-Microsoft authority, and
`verify_challenge_resource=False` for a vault outside `vault.azure.net` (settings).

Every failure becomes one of two exceptions whose messages name the operation, the object and what
Key Vault answered, never a value: `KeyVaultRefused` (authentication failed, 403, 404, 400: a
person must act) and `KeyVaultUnavailable` (network, 429, 5xx: retry later).
"""

from __future__ import annotations

import functools
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CertificateCredential, ManagedIdentityCredential
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient
from django.conf import settings
from django.dispatch import receiver
from django.test.signals import setting_changed


class KeyVaultError(Exception):
    """Base class of Key Vault failures; messages carry no key material and no secret."""


class KeyVaultRefused(KeyVaultError):
    """Key Vault (or Entra, for the vault token) refused: a missing role, an unknown key or secret,
    a credential Entra does not accept. Retrying will not help; a person must act."""


class KeyVaultUnavailable(KeyVaultError):
    """Key Vault could not be reached or answered 429/5xx: transient."""


def _verify() -> str | bool:
    return settings.KEY_VAULT_CA_BUNDLE or True


@functools.cache
def keyvault_credential() -> TokenCredential:
    """The host identity's credential, built once per process (it caches its vault token)."""
    common: dict[str, Any] = {"connection_verify": _verify(), "retry_total": 2}
    if settings.KEY_VAULT_CLIENT_CERTIFICATE_PATH:
        return CertificateCredential(
            settings.KEY_VAULT_TENANT_ID,
            settings.KEY_VAULT_CLIENT_ID,
            certificate_path=settings.KEY_VAULT_CLIENT_CERTIFICATE_PATH,
            authority=settings.KEY_VAULT_AUTHORITY_HOST,
            # Instance discovery asks login.microsoftonline.com about the authority: off, so that a
            # sandbox or sovereign authority is used as configured and nothing calls Microsoft.
            disable_instance_discovery=True,
            **common,
        )
    return ManagedIdentityCredential(client_id=settings.KEY_VAULT_CLIENT_ID or None, **common)


def _client_options() -> dict[str, Any]:
    return {
        "verify_challenge_resource": settings.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE,
        "connection_verify": _verify(),
        "connection_timeout": settings.KEY_VAULT_TIMEOUT,
        "read_timeout": settings.KEY_VAULT_TIMEOUT,
        "retry_total": 2,
    }


@functools.cache
def _crypto_client(key_id: str) -> CryptographyClient:
    return CryptographyClient(key_id, keyvault_credential(), **_client_options())


def _translated(operation: str, object_id: str, error: Exception) -> KeyVaultError:
    if isinstance(error, ClientAuthenticationError) and error.status_code is None:
        # Raised by the credential: Entra refused the host identity (or managed identity is absent).
        return KeyVaultRefused(
            f"Key Vault {operation} on {object_id}: the host identity could not get a Key Vault token "
            f"({type(error).__name__}); check KEY_VAULT_TENANT_ID, KEY_VAULT_CLIENT_ID and its credential."
        )
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        status = error.status_code
        code = error.error.code if error.error is not None else (error.reason or "")
        if status == 429 or status >= 500:
            return KeyVaultUnavailable(f"Key Vault {operation} on {object_id}: HTTP {status}; retried later.")
        hint = (
            " (the host identity lacks the role for this operation on this object)" if status == 403 else ""
        )
        return KeyVaultRefused(f"Key Vault refused {operation} on {object_id}: HTTP {status} {code}{hint}.")
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return KeyVaultUnavailable(
            f"Key Vault {operation} on {object_id}: unreachable ({type(error).__name__})."
        )
    return KeyVaultUnavailable(f"Key Vault {operation} on {object_id}: failed ({type(error).__name__}).")


_SDK_ERRORS = (HttpResponseError, ServiceRequestError, ServiceResponseError, ClientAuthenticationError)


def key_wrap(*, key_id: str, key: bytes) -> tuple[str, bytes]:
    """Wrap `key` with RSA-OAEP-256 under the Key Vault key (a versionless id means its newest
    version). Answers the versioned key id that wrapped it, and the wrapped key."""
    try:
        # A client of its own: a cached one would keep wrapping with the version it first fetched.
        client = CryptographyClient(key_id, keyvault_credential(), **_client_options())
        result = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, key)
    except _SDK_ERRORS as error:
        raise _translated("wrapKey", key_id, error) from None
    return str(result.key_id or key_id), result.encrypted_key


def key_unwrap(*, key_id: str, wrapped: bytes) -> bytes:
    try:
        return _crypto_client(key_id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key
    except _SDK_ERRORS as error:
        raise _translated("unwrapKey", key_id, error) from None


def key_sign_ps256(*, key_id: str, digest: bytes) -> bytes:
    """A PS256 signature of a SHA-256 digest, made inside Key Vault."""
    try:
        return _crypto_client(key_id).sign(SignatureAlgorithm.ps256, digest).signature
    except _SDK_ERRORS as error:
        raise _translated("sign", key_id, error) from None


def secret_get(*, secret_id: str) -> str:
    """The value of a Key Vault secret, named by its id (`https://<vault>/secrets/<name>[/<version>]`)."""
    try:
        parsed = KeyVaultSecretIdentifier(secret_id)
    except ValueError:
        raise KeyVaultRefused(f"{secret_id} is not a Key Vault secret id.") from None
    try:
        client = SecretClient(parsed.vault_url, keyvault_credential(), **_client_options())
        value = client.get_secret(parsed.name, parsed.version).value
    except _SDK_ERRORS as error:
        raise _translated("get secret", secret_id, error) from None
    if value is None:
        raise KeyVaultRefused(f"Key Vault secret {secret_id} has no value.")
    return value


def keyvault_clients_clear() -> None:
    keyvault_credential.cache_clear()
    _crypto_client.cache_clear()


@receiver(setting_changed)
def _clients_reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("KEY_VAULT_"):
        keyvault_clients_clear()
