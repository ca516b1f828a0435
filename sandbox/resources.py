"""Resource stubs on the sandbox's own host: Partner Center (`/v1/customers`,
`/v1/profiles/organization`; its roles in `sandbox.partner_roles`) and Microsoft Graph
(`/v1.0/organization`, `/v1.0/me`, `/v1.0/me/memberOf`; its GDAP reads in `sandbox.gdap`).

Each validates the bearer token as the real API would: RS256 signature with the sandbox key, the
API's audience, expiry by the sandbox clock, a known tenant with the v1 issuer. Partner Center
answers 401 with code 900421 when `amr` lacks `mfa` and 403 when the user holds no Partner Center
role that allows the call (docs/sandbox.md, conformance table).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.catalog import GRAPH, PARTNER_CENTER, Resource
from sandbox.directory import Tenant, User
from sandbox.faults import PARTNER_CENTER_ONLY_KINDS
from sandbox.keys import b64url
from sandbox.tokens import v1_issuer
from sandbox.web import apply_fault, ctx

# Partner Center roles that may call the customer and profile APIs: the Secure Application Model
# document has partners consent "using either Admin Agent or Sales Agent credentials".
PC_API_ROLES = frozenset({"AdminAgent", "SalesAgent"})


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


def pc_error(request: Request, status: int, code: str | int, description: str) -> Response:
    """Partner Center's error body and headers (error-codes reference); echoes MS-CorrelationId."""
    headers = {"WWW-Authenticate": "OAuth realm=urn:cpsvc:cpid:sandbox", "MS-RequestId": str(uuid.uuid4())}
    correlation = request.headers.get("ms-correlationid")
    if correlation:
        headers["MS-CorrelationId"] = correlation
    return JSONResponse(
        {"code": str(code), "description": description, "data": [], "source": "PartnerFD"},
        status_code=status,
        headers=headers,
    )


async def _resource_fault(request: Request) -> Response | None:
    """Count a resource request and answer with an injected fault if one applies."""
    ctx(request).state.counters.requests_by_endpoint["resource"] += 1
    return await apply_fault(request, "resource")


async def partner_center(
    request: Request, roles: frozenset[str] = PC_API_ROLES, *, app_only: bool = True
) -> tuple[dict[str, Any], Tenant] | Response:
    """Validate a Partner Center call: token, MFA for App+User, and the user's Partner Center role
    (one of `roles`). `app_only`: whether an App-only token may call it."""
    fault = await _resource_fault(request)
    if fault is not None:
        return fault
    try:
        claims, tenant = _claims(request, PARTNER_CENTER)
    except Rejected as exc:
        return pc_error(request, 401, 400, f"Access denied: {exc.message}")
    if claims.get("idtyp") == "app":
        if not app_only:
            return pc_error(
                request, 403, 403, "Access denied: this API supports App+User authentication only."
            )
        return claims, tenant
    mfa_fault = ctx(request).state.faults.take("partner_center", PARTNER_CENTER_ONLY_KINDS)
    if mfa_fault is not None:
        ctx(request).state.counters.faults_injected[mfa_fault.kind] += 1
    if "mfa" not in claims.get("amr", []) or mfa_fault is not None:
        # Every App+User call without MFA is refused (enforced for all partners from April 2026); the
        # sandbox ignores the undocumented ValidateMfa test header.
        return pc_error(
            request,
            401,
            900421,
            "Multi-factor authentication is required for App+User access to Partner Center APIs. "
            "The access token does not contain the 'mfa' authentication method reference (amr) claim.",
        )
    user = ctx(request).state.directory.user_by_oid(str(claims.get("oid")))
    if user is None or user.tenant_id != tenant.id or not (user.pc_roles & roles):
        return pc_error(
            request,
            403,
            403,
            "Access denied: the user does not hold a Partner Center role that allows this call.",
        )
    return claims, tenant


async def pc_customers(request: Request) -> Response:
    result = await partner_center(request)
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
    result = await partner_center(request)
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


def graph_error(request: Request, status: int, code: str, message: str) -> Response:
    now = dt.datetime.fromtimestamp(ctx(request).state.now(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {
        "date": now,
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.headers.get("client-request-id"),
    }
    return JSONResponse(
        {"error": {"code": code, "message": message, "innerError": inner}}, status_code=status
    )


async def graph_caller(request: Request) -> tuple[dict[str, Any], Tenant] | Response:
    fault = await _resource_fault(request)
    if fault is not None:
        return fault
    try:
        return _claims(request, GRAPH)
    except Rejected as exc:
        return graph_error(request, exc.status, exc.code, exc.message)


async def graph_organization(request: Request) -> Response:
    result = await graph_caller(request)
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


async def _graph_me(request: Request) -> tuple[User, dict[str, Any]] | Response:
    """The signed-in user of a delegated Graph token and the token's claims, or Graph's error answer."""
    result = await graph_caller(request)
    if isinstance(result, Response):
        return result
    claims, _ = result
    if claims.get("idtyp") == "app":
        return graph_error(
            request, 400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    user = ctx(request).state.directory.user_by_oid(str(claims.get("oid")))
    if user is None:
        return graph_error(request, 404, "Request_ResourceNotFound", "Resource does not exist.")
    return user, claims


async def graph_me(request: Request) -> Response:
    result = await _graph_me(request)
    if isinstance(result, Response):
        return result
    user, _ = result
    return JSONResponse(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": user.oid,
            "displayName": user.display_name,
            "userPrincipalName": user.upn,
            "mail": user.upn,
        }
    )


# Delegated permissions that let /me/memberOf answer at all, and those that let it show group
# properties (Graph reference, "List a user's direct memberships" and "Limited information returned
# for inaccessible member objects").
MEMBER_OF_SCOPES = frozenset(
    {
        "User.Read",
        "User.Read.All",
        "GroupMember.Read.All",
        "Group.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
GROUP_READ_SCOPES = MEMBER_OF_SCOPES - {"User.Read", "User.Read.All"}
MEMBER_OF_PAGE = (100, 999)  # default and maximum $top


async def graph_me_member_of(request: Request) -> Response:
    """GET /v1.0/me/memberOf: the signed-in user's direct memberships (groups, directory roles), paged
    with `@odata.nextLink`. Group display names are not unique and any member may create a security
    group by default, so nothing here says whether a user is a Partner Center agent."""
    result = await _graph_me(request)
    if isinstance(result, Response):
        return result
    user, claims = result
    scopes = set(str(claims.get("scp", "")).split())
    if not scopes & MEMBER_OF_SCOPES:
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    try:
        top = int(request.query_params.get("$top", MEMBER_OF_PAGE[0]))
        offset = _skiptoken_offset(request.query_params.get("$skiptoken"), user.oid)
    except ValueError:
        return graph_error(request, 400, "Request_BadRequest", "Invalid $top or $skiptoken value.")
    if not 1 <= top <= MEMBER_OF_PAGE[1]:
        return graph_error(request, 400, "Request_BadRequest", f"Invalid page size specified: '{top}'.")
    full = bool(scopes & GROUP_READ_SCOPES)
    members = _memberships(user, full)
    body: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
        "value": members[offset : offset + top],
    }
    if offset + top < len(members):
        token = b64url(json.dumps([user.oid, offset + top]).encode())
        body["@odata.nextLink"] = f"{ctx(request).base_url}/v1.0/me/memberOf?$top={top}&$skiptoken={token}"
    return JSONResponse(body)


def _skiptoken_offset(token: str | None, oid: str) -> int:
    if token is None:
        return 0
    try:
        owner, offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad skiptoken") from exc
    if owner != oid or not isinstance(offset, int) or offset < 0:
        raise ValueError("bad skiptoken")
    return offset


def group_object_id(tenant_id: str, key: str) -> str:
    """A group's object id, stable across runs: the id of a Partner Center group (AdminAgents, ...)
    is the same wherever it appears (memberOf, GDAP access containers)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{key}"))


def _memberships(user: User, full: bool) -> list[dict[str, Any]]:
    """Direct memberships in a stable order. Without a group-reading permission Graph returns only the
    type and id of each group."""

    def group(name: str, key: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.group",
            "id": group_object_id(user.tenant_id, key),
            "displayName": None,
            "securityEnabled": None,
        }
        if full:
            item.update(displayName=name, securityEnabled=True, mailEnabled=False)
        return item

    items = [group(name, name) for name in sorted(user.groups)]
    # A group the user created himself is another object, whatever its display name.
    items += [group(name, f"{user.oid}/own/{name}") for name in user.self_made_groups]
    items += [
        {
            "@odata.type": "#microsoft.graph.directoryRole",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user.tenant_id}/role/{role}")),
            "displayName": role if full else None,
        }
        for role in sorted(user.directory_roles)
    ]
    return items
