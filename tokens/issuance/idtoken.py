"""ID token validation. MSAL Python 1.38+ checks only the nonce of an ID token (it decodes the
claims without verifying anything else), so the panel verifies the rest itself: RS256 signature on
a key from the authority's JWKS, issuer, audience, tenant, expiry, nonce. Not MFA: v2.0 ID tokens
carry no `amr` (partners.partner_center reads it from the Partner Center access token).

Claims are untrusted until the signature is checked, yet `tid` picks the discovery URL that
yields the keys: it must be a GUID first, so that no token can steer a request elsewhere. The
authority's discovery and JWKS answers are checked too: whatever they are (an HTTP error, not
JSON, missing or mistyped members), the result is `SigningKeysUnavailable`, never a crash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import jwt
import requests
from django.core.cache import cache

from tokens.issuance.identity import IdentityProviderHttpError, identity_http_client

JWKS_CACHE_SECONDS = 3600
# An unknown key id triggers at most one JWKS refetch per this many seconds (key rollover
# support without letting forged tokens make us hammer the provider).
JWKS_REFETCH_SECONDS = 60
CLOCK_SKEW_SECONDS = 120


# Entra's tenant and object ids are GUIDs (ID-token claims reference: `tid`, `oid`).
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class IdTokenInvalid(Exception):
    """The ID token cannot be trusted. The message is safe to show (no token content)."""


class SigningKeysUnavailable(IdTokenInvalid):
    """The authority's discovery document or key set could not be read. `transient`: it did not
    answer (timeout, dropped connection, HTTP 429/5xx) and trying again later may work; otherwise
    it answered something unusable. The message is safe to show."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise SigningKeysUnavailable(
            f"the identity provider's {what} answered HTTP {response.status_code}", transient=False
        )
    try:
        body = response.json()
    except ValueError as error:
        raise SigningKeysUnavailable(
            f"the identity provider's {what} is not JSON", transient=False
        ) from error
    if not isinstance(body, dict):
        raise SigningKeysUnavailable(f"the identity provider's {what} is not a JSON object", transient=False)
    return body


def _jwks_fetch(authority_host: str, tenant: str) -> dict[str, Any]:
    client = identity_http_client()
    try:
        discovery = client.get(f"{authority_host.rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration")
        if discovery.status_code == 400:  # Entra's answer for an unknown tenant (AADSTS90002)
            raise IdTokenInvalid("the identity provider does not know this tenant")
        jwks_uri = _json_object(discovery, "discovery document").get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlparse(jwks_uri).scheme != "https":
            raise SigningKeysUnavailable(
                "the identity provider's discovery document names no https jwks_uri", transient=False
            )
        keys = _json_object(client.get(jwks_uri), "key set")
    except IdentityProviderHttpError as error:
        raise SigningKeysUnavailable(
            f"the identity provider answered HTTP {error.status} for its signing keys", transient=True
        ) from error
    except requests.RequestException as error:
        raise SigningKeysUnavailable(
            "the identity provider did not answer for its signing keys", transient=True
        ) from error
    finally:
        client.close()
    if not isinstance(keys.get("keys"), list) or not all(isinstance(jwk, dict) for jwk in keys["keys"]):
        raise SigningKeysUnavailable("the identity provider's key set has no list of keys", transient=False)
    return keys


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
        keys = _jwks_fetch(authority_host, tenant)
        cache.set(cache_key, keys, JWKS_CACHE_SECONDS)
    return dict(keys)


def _signing_key(authority_host: str, tenant: str, kid: str) -> Any:
    for refresh in (False, True):
        if refresh and not cache.add(f"jwks-refetch:{authority_host}:{tenant}", 1, JWKS_REFETCH_SECONDS):
            break
        for jwk in _jwks(authority_host, tenant, refresh=refresh).get("keys", []):
            if jwk.get("kid") == kid:
                try:
                    return jwt.PyJWK(jwk, algorithm="RS256").key
                except jwt.PyJWTError as error:
                    raise SigningKeysUnavailable(
                        "the identity provider publishes this signing key in a form we cannot read",
                        transient=False,
                    ) from error
    raise IdTokenInvalid("the ID token is signed with a key the identity provider does not publish")


def _audience_check(claims: dict[str, Any], client_id: str) -> None:
    """PyJWT has checked that `aud` is our client id or a list of strings holding it. OpenID Connect Core 3.1.3.7: with
    several audiences, `azp` must be present; when present, it must be our client id. Entra's v2
    ID tokens carry one `aud` string, so a list is held to the stricter rule: `azp` required."""
    audience, azp = claims["aud"], claims.get("azp")
    if isinstance(audience, list) and azp is None:
        raise IdTokenInvalid("the ID token names several audiences and no authorized party (azp)")
    if azp is not None and azp != client_id:
        raise IdTokenInvalid("the ID token was issued to another application (azp)")


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
    tid = unverified.get("tid")
    if not isinstance(tid, str) or not GUID.fullmatch(tid):
        raise IdTokenInvalid("the ID token names no tenant (its tid is not a GUID)")
    tenant = tid.lower()
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
    _audience_check(claims, client_id)
    if claims["nonce"] != nonce_hash(raw_nonce):
        raise IdTokenInvalid("the ID token does not belong to this sign-in (nonce mismatch)")
    if not isinstance(claims["oid"], str) or not GUID.fullmatch(claims["oid"]):
        raise IdTokenInvalid("the ID token's user id (oid) is not a GUID")
    return VerifiedIdentity(
        tenant_id=tenant,
        object_id=str(claims["oid"]),
        upn=str(claims.get("preferred_username") or claims.get("upn") or ""),
        name=str(claims.get("name", "")),
        claims=claims,
    )
