"""Partner Center's partner-level roles: `GET /v1/roles` and `GET /v1/roles/{role_id}/usermembers`.

Paths, query parameters and shapes follow Microsoft's REST reference ("Manage account profiles - Get all
available roles", "... - Get user members by role") and Partner Center SDK models (Role: id, name;
UserMember: id, displayName, userPrincipalName, roleId; SeekBasedResourceCollection with a
continuation token). Paging is Partner Center's seek pattern: `links.next` with `seekOperation=Next` and
the token in the `MS-ContinuationToken` header. Membership comes from the directory's Partner Center
roles, never from group display names. Who may read them is not documented: only Admin Agents may (the
stricter choice, docs/sandbox.md).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.catalog import PARTNER_ROLES, PartnerRole
from sandbox.keys import b64url
from sandbox.resources import partner_center, pc_error

READERS = frozenset({"AdminAgent"})
PAGE_SIZE = (100, 500)  # default and maximum `size` ("should not be over 500 and not lower than 1")


def _role(role_id: str) -> PartnerRole | None:
    return next((r for r in PARTNER_ROLES if r.id == role_id.lower()), None)


async def roles(request: Request) -> Response:
    result = await partner_center(request, READERS, app_only=False)
    if isinstance(result, Response):
        return result
    items = [{"id": r.id, "name": r.name, "attributes": {"objectType": "Role"}} for r in PARTNER_ROLES]
    return JSONResponse(
        {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
    )


async def role_user_members(request: Request) -> Response:
    result = await partner_center(request, READERS, app_only=False)
    if isinstance(result, Response):
        return result
    _, tenant = result
    role = _role(request.path_params["role_id"])
    if role is None:
        return pc_error(request, 404, 404, "The role was not found.")
    try:
        size = int(request.query_params.get("size", PAGE_SIZE[0]))
    except ValueError:
        size = 0
    if not 1 <= size <= PAGE_SIZE[1]:
        return pc_error(request, 400, 400, "size must be between 1 and 500.")
    seek = request.query_params.get("seekOperation")
    offset = 0
    if seek is not None:
        token = request.headers.get("ms-continuationtoken")
        if seek.lower() != "next" or token is None:
            return pc_error(request, 400, 400, "seekOperation=Next needs the MS-ContinuationToken header.")
        resumed = _offset(token, role.id, tenant.id)
        if resumed is None:
            return pc_error(request, 400, 400, "The continuation token is not valid.")
        offset = resumed
    members = sorted((u for u in tenant.users if role.key in u.pc_roles), key=lambda u: u.upn.lower())
    page = members[offset : offset + size]
    self_uri = f"/v1/roles/{role.id}/usermembers?size={size}"
    body: dict[str, Any] = {
        "totalCount": len(page),
        "items": [
            {
                "id": u.oid,
                "displayName": u.display_name,
                "userPrincipalName": u.upn,
                "roleId": role.id,
                "attributes": {"objectType": "UserMember"},
            }
            for u in page
        ],
        "links": {"self": {"uri": self_uri, "method": "GET", "headers": []}},
        "attributes": {"objectType": "Collection"},
    }
    if offset + size < len(members):
        token = b64url(json.dumps([role.id, tenant.id, offset + size]).encode())
        body["continuationToken"] = token
        body["links"]["next"] = {
            "uri": f"{self_uri}&seekOperation=Next",
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": token}],
        }
    return JSONResponse(body)


def _offset(token: str, role_id: str, tenant_id: str) -> int | None:
    try:
        role, tenant, offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        return None
    if (role, tenant) != (role_id, tenant_id) or not isinstance(offset, int) or offset < 0:
        return None
    return offset
