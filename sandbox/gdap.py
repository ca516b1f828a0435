"""Microsoft Graph's GDAP reads, as the panel uses them:

* `GET /v1.0/tenantRelationships/delegatedAdminRelationships`: the signed-in partner's
  relationships (delegatedAdminRelationship resources), paged with `@odata.nextLink`;
* `GET /v1.0/tenantRelationships/delegatedAdminRelationships/{id}/accessAssignments`: the security
  groups of one relationship and their roles (delegatedAdminAccessAssignment resources).

Both need a Graph token carrying `DelegatedAdminRelationship.Read.All` (or `.ReadWrite.All`); without
it Graph answers 403. A signed-in user who is not an Admin Agent gets a successful, empty answer:
Microsoft says that is by design (docs/sandbox.md, conformance table, for every source).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.directory import GDAP_MAX_PAGE, Tenant
from sandbox.keys import b64url
from sandbox.resources import graph_caller, graph_error, group_object_id
from sandbox.state import Relationship
from sandbox.web import ctx

GDAP_READ_PERMISSIONS = frozenset(
    {"DelegatedAdminRelationship.Read.All", "DelegatedAdminRelationship.ReadWrite.All"}
)
LIST_PATH = "/v1.0/tenantRelationships/delegatedAdminRelationships"
CONTEXT = "https://graph.microsoft.com/v1.0/tenantRelationships/$metadata#"
# The query options the sandbox implements; Graph supports more ($filter, $select, ...), which the
# panel does not send: refused rather than silently ignored, so no client believes it filtered.
PAGING_OPTIONS = frozenset({"$top", "$skiptoken"})


def graph_time(moment: float | None) -> str | None:
    """Graph's DateTimeOffset as the GDAP API writes it: UTC, seven fractional digits, `Z`."""
    if moment is None:
        return None
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _etag(*parts: object) -> str:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]
    return 'W/"' + base64.b64encode(f"'\"{digest}\"'".encode()).decode() + '"'


async def _caller(request: Request) -> tuple[Tenant, bool] | Response:
    """The partner tenant of a Graph token allowed to read GDAP relationships, and whether the caller
    sees them (an app, or a signed-in Admin Agent); or Graph's error answer."""
    ctx(request).state.counters.requests_by_endpoint["gdap"] += 1
    result = await graph_caller(request)
    if isinstance(result, Response):
        return result
    claims, tenant = result
    app_only = claims.get("idtyp") == "app"
    granted = set(claims.get("roles") or []) if app_only else set(str(claims.get("scp", "")).split())
    if not granted & GDAP_READ_PERMISSIONS:
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    if app_only:
        return tenant, True
    user = ctx(request).state.directory.user_by_oid(str(claims.get("oid")))
    admin_agent = user is not None and user.tenant_id == tenant.id and "AdminAgent" in user.pc_roles
    return tenant, admin_agent


def _page(request: Request, items: list[dict[str, Any]], *, owner: str, path: str, context: str) -> Response:
    """One page of `items`: `$top` (1..300, default the sandbox's `gdap_page_size`) and Graph's opaque
    `$skiptoken`, which only the `@odata.nextLink` the sandbox wrote carries (bound to the caller's
    tenant and the path)."""
    params = request.query_params
    unsupported = sorted(set(params) - PAGING_OPTIONS)
    if unsupported:
        return graph_error(
            request,
            400,
            "Request_UnsupportedQuery",
            f"The sandbox does not support {', '.join(unsupported)}.",
        )
    try:
        top = int(params.get("$top", ctx(request).state.settings.gdap_page_size))
        offset = _skiptoken_offset(params.get("$skiptoken"), owner, path)
    except ValueError:
        return graph_error(request, 400, "Request_BadRequest", "Invalid $top or $skiptoken value.")
    if not 1 <= top <= GDAP_MAX_PAGE:
        return graph_error(request, 400, "Request_BadRequest", f"Invalid page size specified: '{top}'.")
    body: dict[str, Any] = {"@odata.context": CONTEXT + context, "value": items[offset : offset + top]}
    if offset + top < len(items):
        token = b64url(json.dumps([owner, path, offset + top]).encode())
        body["@odata.nextLink"] = f"{ctx(request).base_url}{path}?$top={top}&$skiptoken={token}"
    return JSONResponse(body)


def _skiptoken_offset(token: str | None, owner: str, path: str) -> int:
    if token is None:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError("bad skiptoken") from exc
    if not (isinstance(decoded, list) and len(decoded) == 3):
        raise ValueError("bad skiptoken")
    token_owner, token_path, offset = decoded
    if token_owner != owner or token_path != path or not isinstance(offset, int) or offset < 0:
        raise ValueError("bad skiptoken")
    return offset


def relationship_resource(relationship: Relationship, customer: Tenant) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "@odata.etag": _etag(
            relationship.id, relationship.status, relationship.end_at, relationship.modified_at
        ),
        "id": relationship.id,
        "displayName": relationship.display_name,
        "duration": f"P{relationship.duration_days}D",
        "customer": {"tenantId": customer.id, "displayName": customer.name},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": role} for role in relationship.roles]},
        "status": relationship.status,
        "autoExtendDuration": relationship.auto_extend,
        "createdDateTime": graph_time(relationship.created_at),
        "lastModifiedDateTime": graph_time(relationship.modified_at),
        "activatedDateTime": graph_time(relationship.activated_at),
        "endDateTime": graph_time(relationship.end_at),
    }


# Access assignments exist once created on an active relationship and are deprovisioned with it.
# Microsoft documents the assignment statuses (pending, active, deleting, deleted, error) but not how
# they follow the relationship's; this mapping is the sandbox's.
ASSIGNMENT_STATUS = {
    "active": "active",
    "terminationRequested": "active",
    "expiring": "deleting",
    "terminating": "deleting",
    "expired": "deleted",
    "terminated": "deleted",
}


def assignment_resources(relationship: Relationship) -> list[dict[str, Any]]:
    status = ASSIGNMENT_STATUS.get(relationship.status)
    if status is None:  # not active yet: nothing can be assigned
        return []
    return [
        {
            "@odata.type": "#microsoft.graph.delegatedAdminAccessAssignment",
            "@odata.etag": _etag(relationship.id, group, status),
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gdap-assignment/{relationship.id}/{group}")),
            "status": status,
            "createdDateTime": graph_time(relationship.activated_at),
            "lastModifiedDateTime": graph_time(relationship.modified_at),
            "accessContainer": {
                "accessContainerId": group_object_id(relationship.partner_id, group),
                "accessContainerType": "securityGroup",
            },
            "accessDetails": {"unifiedRoles": [{"roleDefinitionId": role} for role in relationship.roles]},
        }
        for group in sorted(relationship.groups)
    ]


async def relationships_list(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    tenant, sees = caller
    state = ctx(request).state
    items = (
        [
            relationship_resource(r, state.directory.tenants[r.customer_id])
            for r in state.relationships_of(tenant.id)
        ]
        if sees
        else []
    )
    return _page(request, items, owner=tenant.id, path=LIST_PATH, context="delegatedAdminRelationships")


async def access_assignments_list(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    tenant, sees = caller
    state = ctx(request).state
    relationship_id = request.path_params["relationship_id"]
    relationship = next((r for r in state.relationships_of(tenant.id) if r.id == relationship_id), None)
    if relationship is None:
        return graph_error(
            request,
            404,
            "Request_ResourceNotFound",
            f"The relationship '{relationship_id[:80]}' does not exist.",
        )
    path = f"{LIST_PATH}/{relationship.id}/accessAssignments"
    items = assignment_resources(relationship) if sees else []
    return _page(request, items, owner=tenant.id, path=path, context="accessAssignments")
