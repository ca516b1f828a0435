"""Client assertions signed by Key Vault: the application's certificate key never leaves Key Vault.

Each call builds the JWT Entra asks for (Learn "Microsoft identity platform certificate credentials":
header `alg` PS256 with `x5t#S256`, the SHA-256 thumbprint of the certificate; claims `aud` = the token
endpoint, `iss` = `sub` = the client id, `jti`, `nbf`, `iat`, `exp`), hashes the signing input and has
Key Vault sign the digest (`sign`, PS256). MSAL calls it for every token request (a callable
`client_assertion`): a fresh `jti` each time, never a cached assertion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokens.credentials.keyvault import key_sign_ps256

ASSERTION_LIFETIME = 600  # seconds; Entra accepts up to ten minutes of validity for an assertion


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _json(value: Mapping[str, object]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


class KeyVaultAssertion:
    """The `client_assertion` callable for one (client id, token endpoint, Key Vault key)."""

    def __init__(self, *, client_id: str, token_endpoint: str, key_id: str, certificate_pem: str) -> None:
        der = x509.load_pem_x509_certificate(certificate_pem.encode()).public_bytes(
            serialization.Encoding.DER
        )
        self._header = {"alg": "PS256", "typ": "JWT", "x5t#S256": _b64url(hashlib.sha256(der).digest())}
        self._client_id = client_id
        self._token_endpoint = token_endpoint
        self._key_id = key_id

    def __call__(self) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "aud": self._token_endpoint,
            "iss": self._client_id,
            "sub": self._client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        signing_input = f"{_json(self._header)}.{_json(claims)}"
        digest = hashlib.sha256(signing_input.encode()).digest()
        return f"{signing_input}.{_b64url(key_sign_ps256(key_id=self._key_id, digest=digest))}"
