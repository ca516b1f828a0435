"""Minting RS256 JWTs with Entra's claims (entra-protocol.md 5).

Access tokens are v1 (Partner Center, Graph and ARM are first-party resources that accept v1 tokens;
their `iss` is `https://sts.windows.net/{tid}/`, as in Entra). ID tokens follow the endpoint version:
v2 `iss` is `{sandbox base}/{tid}/v2.0` (what discovery advertises), v1 is the sts.windows.net form; only
v1 ID tokens carry `amr`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from typing import Any

from sandbox.catalog import Resource
from sandbox.directory import User
from sandbox.keys import SigningKey, b64url
from sandbox.signing import UnsignedJwt


def v1_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def v2_issuer(base_url: str, tenant_id: str) -> str:
    return f"{base_url}/{tenant_id}/v2.0"


def client_info(user: User) -> str:
    return b64url(json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode())


def pairwise_sub(oid: str, audience: str) -> str:
    """Entra's `sub` is pairwise: stable per (principal, application), different across applications."""
    return b64url(hashlib.sha256(f"{oid}|{audience}".encode()).digest())


def service_principal_oid(client_id: str, tenant_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}:{tenant_id}"))


class Minter:
    def __init__(self, key: SigningKey, base_url: str) -> None:
        self.key = key
        self.base_url = base_url

    def _sign(self, claims: dict[str, Any], *, v1: bool) -> UnsignedJwt:
        headers: dict[str, Any] = {"typ": "JWT", "kid": self.key.kid}
        if v1:
            headers["x5t"] = self.key.kid
        # Signed by sandbox.signing.Signer just before the answer leaves (possibly in another process).
        return UnsignedJwt(claims, headers)

    @staticmethod
    def _times(now: float, lifetime: int) -> dict[str, int]:
        iat = int(now)
        # Entra back-dates nbf/iat by five minutes to absorb clock skew.
        return {"iat": iat - 300, "nbf": iat - 300, "exp": iat + lifetime}

    def user_access_token(
        self,
        *,
        user: User,
        tenant_id: str,
        resource: Resource,
        permissions: list[str],
        client_id: str,
        appidacr: str,
        amr: tuple[str, ...],
        now: float,
        lifetime: int,
    ) -> UnsignedJwt:
        claims: dict[str, Any] = {
            "aud": resource.uri,
            "iss": v1_issuer(tenant_id),
            **self._times(now, lifetime),
            "acr": "1",
            "aio": secrets.token_urlsafe(16),
            "amr": list(amr),
            "appid": client_id,
            "appidacr": appidacr,
            "ipaddr": "127.0.0.1",
            "name": user.display_name,
            "oid": user.oid,
            "scp": " ".join(sorted(permissions)),
            "sub": pairwise_sub(user.oid, resource.uri),
            "tid": tenant_id,
            "unique_name": user.upn,
            "upn": user.upn,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if tenant_id != user.tenant_id:
            # A GDAP partner user acting in a customer tenant: the identity provider is the partner's tenant.
            claims["idp"] = v1_issuer(user.tenant_id)
        return self._sign(claims, v1=True)

    def app_access_token(
        self, *, tenant_id: str, resource: Resource, client_id: str, appidacr: str, now: float, lifetime: int
    ) -> UnsignedJwt:
        sp_oid = service_principal_oid(client_id, tenant_id)
        claims = {
            "aud": resource.uri,
            "iss": v1_issuer(tenant_id),
            **self._times(now, lifetime),
            "aio": secrets.token_urlsafe(16),
            "appid": client_id,
            "appidacr": appidacr,
            "idp": v1_issuer(tenant_id),
            "idtyp": "app",
            "oid": sp_oid,
            "sub": sp_oid,
            "tid": tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        return self._sign(claims, v1=True)

    def id_token(
        self,
        *,
        user: User,
        tenant_id: str,
        client_id: str,
        amr: tuple[str, ...],
        nonce: str | None,
        now: float,
        v1: bool,
    ) -> UnsignedJwt:
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": v1_issuer(tenant_id) if v1 else v2_issuer(self.base_url, tenant_id),
            **self._times(now, 3600),
            "name": user.display_name,
            "oid": user.oid,
            "sub": pairwise_sub(user.oid, client_id),
            "tid": tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0" if v1 else "2.0",
        }
        if v1:
            # `amr` (and `acr`) exist in v1.0 tokens only: Microsoft's ID-token claims reference, and Microsoft's
            # answers in MicrosoftDocs/azure-docs issues 46953 and 85021 (no amr in v2.0 tokens).
            claims.update(unique_name=user.upn, upn=user.upn, amr=list(amr))
        else:
            claims.update(preferred_username=user.upn, aio=secrets.token_urlsafe(16))
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims, v1=v1)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
