"""Resource stubs on the sandbox's own host: Partner Center (`/v1/customers`,
`/v1/profiles/organization`) and Microsoft Graph (`/v1.0/organization`, `/v1.0/me`).

Each validates the bearer token as the real API would: RS256 signature with the sandbox key, the
API's audience, expiry by the sandbox clock, a known tenant with the v1 issuer. Partner Center
answers 401 with code 900421 when `amr` lacks `mfa` (entra-protocol.md 4) and 403 when the user is
in neither AdminAgents nor SalesAgents.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.catalog import GRAPH, PARTNER_CENTER, Resource
from sandbox.directory import Tenant, User
from sandbox.tokens import v1_issuer
from sandbox.web import apply_fault, ctx

PC_AGENT_GROUPS = frozenset({"AdminAgents", "SalesAgents"})


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _claims(request: Request, resource: Resource) -> tuple[dict[str, Any], Tenant]:
    context = ctx(request)
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Rejected(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = jwt.decode(
            header[7:].strip(),
            context.key.public_key,
            algorithms=["RS256"],
            audience=[resource.uri, resource.app_id],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "tid", "iss"],
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise Rejected(401, "InvalidAuthenticationToken", "Invalid audience.") from exc
    except jwt.PyJWTError as exc:
        raise Rejected(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature or format."
        ) from exc
    if claims["exp"] <= context.state.now():
        raise Rejected(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    tenant = context.state.directory.tenants.get(str(claims["tid"]))
    if tenant is None or claims["iss"] != v1_issuer(tenant.id):
        raise Rejected(401, "InvalidAuthenticationToken", "Invalid issuer or tenant.")
    return claims, tenant


def _pc_error(status: int, code: str | int, description: str) -> Response:
    return JSONResponse(
        {"code": str(code), "description": description, "data": [], "source": "PartnerFD"},
        status_code=status,
        headers={"WWW-Authenticate": "OAuth realm=urn:cpsvc:cpid:sandbox", "MS-RequestId": str(uuid.uuid4())},
    )


async def _resource_fault(request: Request) -> Response | None:
    """Count a resource request and answer with an injected fault if one applies."""
    ctx(request).state.counters.requests_by_endpoint["resource"] += 1
    return await apply_fault(request, "resource")


async def _partner_center(request: Request) -> tuple[dict[str, Any], Tenant] | Response:
    fault = await _resource_fault(request)
    if fault is not None:
        return fault
    try:
        claims, tenant = _claims(request, PARTNER_CENTER)
    except Rejected as exc:
        return _pc_error(401, 400, f"Access denied: {exc.message}")
    if claims.get("idtyp") != "app":
        if "mfa" not in claims.get("amr", []):
            return _pc_error(
                401,
                900421,
                "Multi-factor authentication is required for App+User access to Partner Center APIs. "
                "The access token does not contain the 'mfa' authentication method reference (amr) claim.",
            )
        user = ctx(request).state.directory.user_by_oid(str(claims.get("oid")))
        if user is None or not (user.groups & PC_AGENT_GROUPS):
            return _pc_error(
                403, 403, "Access denied: the user is not an Admin agent or Sales agent of the partner."
            )
    return claims, tenant


async def pc_customers(request: Request) -> Response:
    result = await _partner_center(request)
    if isinstance(result, Response):
        return result
    _, tenant = result
    items = [
        {
            "id": c.id,
            "companyProfile": {
                "tenantId": c.id,
                "domain": c.domain,
                "companyName": c.name,
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "relationshipToPartner": "reseller",
            "attributes": {"objectType": "Customer"},
        }
        for c in ctx(request).state.directory.customers_of(tenant.id)
    ]
    return JSONResponse(
        {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
    )


async def pc_organization_profile(request: Request) -> Response:
    result = await _partner_center(request)
    if isinstance(result, Response):
        return result
    _, tenant = result
    return JSONResponse(
        {
            "id": tenant.id,
            "tenantId": tenant.id,
            "companyName": tenant.name,
            "defaultDomain": tenant.domain,
            "attributes": {"objectType": "OrganizationProfile"},
        }
    )


def _graph_error(request: Request, status: int, code: str, message: str) -> Response:
    now = dt.datetime.fromtimestamp(ctx(request).state.now(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {
        "date": now,
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.headers.get("client-request-id"),
    }
    return JSONResponse(
        {"error": {"code": code, "message": message, "innerError": inner}}, status_code=status
    )


async def _graph(request: Request) -> tuple[dict[str, Any], Tenant] | Response:
    fault = await _resource_fault(request)
    if fault is not None:
        return fault
    try:
        return _claims(request, GRAPH)
    except Rejected as exc:
        return _graph_error(request, exc.status, exc.code, exc.message)


async def graph_organization(request: Request) -> Response:
    result = await _graph(request)
    if isinstance(result, Response):
        return result
    _, tenant = result
    org = {
        "id": tenant.id,
        "displayName": tenant.name,
        "tenantType": "AAD",
        "verifiedDomains": [
            {
                "name": tenant.domain,
                "isDefault": True,
                "isInitial": True,
                "type": "Managed",
                "capabilities": "Email, OfficeCommunicationsOnline",
            }
        ],
    }
    return JSONResponse(
        {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization", "value": [org]}
    )


async def _graph_me(request: Request) -> User | Response:
    """The signed-in user of a delegated Graph token, or Graph's error answer."""
    result = await _graph(request)
    if isinstance(result, Response):
        return result
    claims, _ = result
    if claims.get("idtyp") == "app":
        return _graph_error(
            request, 400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    user = ctx(request).state.directory.user_by_oid(str(claims.get("oid")))
    if user is None:
        return _graph_error(request, 404, "Request_ResourceNotFound", "Resource does not exist.")
    return user


async def graph_me(request: Request) -> Response:
    user = await _graph_me(request)
    if isinstance(user, Response):
        return user
    return JSONResponse(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": user.oid,
            "displayName": user.display_name,
            "userPrincipalName": user.upn,
            "mail": user.upn,
        }
    )


async def graph_me_member_of(request: Request) -> Response:
    """GET /v1.0/me/memberOf: the signed-in user's groups in their home tenant. The panel reads
    AdminAgents / SalesAgents membership here: Partner Center agent roles are group memberships,
    not directory roles, so no token claim carries them (entra-protocol.md section 5)."""
    user = await _graph_me(request)
    if isinstance(user, Response):
        return user
    groups = [
        {
            "@odata.type": "#microsoft.graph.group",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user.tenant_id}/{name}")),
            "displayName": name,
        }
        for name in sorted(user.groups)
    ]
    return JSONResponse(
        {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects", "value": groups}
    )
