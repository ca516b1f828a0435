"""ID token validation. MSAL Python 1.38+ checks only the nonce of an ID token (it decodes the
claims without verifying anything else), so the panel verifies the rest itself: RS256 signature on
a key from the authority's JWKS, issuer, audience, tenant, expiry, nonce. Not MFA: v2.0 ID tokens
carry no `amr` (partners.partner_center reads it from the Partner Center access token)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import jwt
from django.core.cache import cache

from tokens.identity import identity_http_client

JWKS_CACHE_SECONDS = 3600
# An unknown key id triggers at most one JWKS refetch per this many seconds (key rollover
# support without letting forged tokens make us hammer the provider).
JWKS_REFETCH_SECONDS = 60
CLOCK_SKEW_SECONDS = 120


class IdTokenInvalid(Exception):
    """The ID token cannot be trusted. The message is safe to show (no token content)."""


@dataclass(frozen=True)
class VerifiedIdentity:
    tenant_id: str
    object_id: str
    upn: str
    name: str
    claims: dict[str, Any]


def _jwks(authority_host: str, tenant: str, *, refresh: bool = False) -> dict[str, Any]:
    cache_key = f"jwks:{authority_host}:{tenant}"
    keys = None if refresh else cache.get(cache_key)
    if keys is None:
        client = identity_http_client()
        try:
            discovery = client.get(
                f"{authority_host.rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration"
            )
            if discovery.status_code != 200:
                raise IdTokenInvalid("the identity provider does not know this tenant")
            keys = client.get(discovery.json()["jwks_uri"]).json()
        finally:
            client.close()
        cache.set(cache_key, keys, JWKS_CACHE_SECONDS)
    return dict(keys)


def _signing_key(authority_host: str, tenant: str, kid: str) -> Any:
    for refresh in (False, True):
        if refresh and not cache.add(f"jwks-refetch:{authority_host}:{tenant}", 1, JWKS_REFETCH_SECONDS):
            break
        for jwk in _jwks(authority_host, tenant, refresh=refresh).get("keys", []):
            if jwk.get("kid") == kid:
                return jwt.PyJWK(jwk, algorithm="RS256").key
    raise IdTokenInvalid("the ID token is signed with a key the identity provider does not publish")


def nonce_hash(raw_nonce: str) -> str:
    """MSAL sends SHA-256 hex of the flow's raw nonce to the authorize endpoint."""
    return hashlib.sha256(raw_nonce.encode()).hexdigest()


def id_token_verify(
    *,
    id_token: str,
    authority_host: str,
    client_id: str,
    raw_nonce: str,
    expected_tenant: str | None = None,
) -> VerifiedIdentity:
    """Verify everything MSAL does not. Raises IdTokenInvalid with a message fit for the user."""
    try:
        header = jwt.get_unverified_header(id_token)
        unverified = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise IdTokenInvalid("the ID token is malformed") from error
    if header.get("alg") != "RS256":
        raise IdTokenInvalid("the ID token is not signed with RS256")
    tenant = str(unverified.get("tid", ""))
    if not tenant:
        raise IdTokenInvalid("the ID token names no tenant")
    if expected_tenant is not None and tenant.lower() != expected_tenant.lower():
        raise IdTokenInvalid("the sign-in came from a different tenant than expected")
    key = _signing_key(authority_host, tenant, str(header.get("kid", "")))
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=f"{authority_host.rstrip('/')}/{tenant}/v2.0",
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "tid", "oid", "nonce"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise IdTokenInvalid("the ID token has expired") from error
    except jwt.InvalidAudienceError as error:
        raise IdTokenInvalid("the ID token was issued to another application") from error
    except jwt.InvalidIssuerError as error:
        raise IdTokenInvalid("the ID token was issued by an unexpected authority") from error
    except jwt.PyJWTError as error:
        raise IdTokenInvalid("the ID token's signature or claims are invalid") from error
    if claims["nonce"] != nonce_hash(raw_nonce):
        raise IdTokenInvalid("the ID token does not belong to this sign-in (nonce mismatch)")
    return VerifiedIdentity(
        tenant_id=tenant,
        object_id=str(claims["oid"]),
        upn=str(claims.get("preferred_username") or claims.get("upn") or ""),
        name=str(claims.get("name", "")),
        claims=claims,
    )
