"""The control API for the sandbox's Key Vault (test aids, not Microsoft behaviour): its state, a
new key version (as `az keyvault key rotate`), and role assignments added or removed (as
`az role assignment create/delete`). Documented in docs/sandbox.md."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.control import BadRequest, _app, endpoint
from sandbox.tokens import service_principal_oid
from sandbox.vault_state import ROLE_ACTIONS, Assignment
from sandbox.web import Context


def vault_state(request: Request, context: Context, body: dict[str, Any]) -> Response:
    vault = context.state.vault
    return JSONResponse(
        {
            "tenant": vault.config.tenant_id,
            "keys": {
                name: [f"{context.base_url}/keys/{name}/{v.version}" for v in versions]
                for name, versions in vault.keys.items()
            },
            "secrets": sorted(vault.secrets),
            "role_assignments": sorted(
                [
                    {"principal_oid": a.principal_oid, "role": a.role, "scope": a.scope}
                    for a in vault.assignments
                ],
                key=lambda a: (a["principal_oid"], a["role"], a["scope"]),
            ),
            "operations": dict(vault.operations),
        }
    )


def rotate_key(request: Request, context: Context, body: dict[str, Any]) -> Response:
    name = request.path_params["name"]
    try:
        version = context.state.vault.rotate_key(name, context.state.now())
    except KeyError:
        raise BadRequest(f"No key '{name}' in the vault.", 404) from None
    return JSONResponse({"kid": f"{context.base_url}/keys/{name}/{version.version}"}, status_code=201)


def _assignment(context: Context, body: dict[str, Any]) -> Assignment:
    app = _app(context, str(body.get("principal", "")))
    role, scope = body.get("role"), body.get("scope", "/")
    if role not in ROLE_ACTIONS:
        raise BadRequest(f"'role' must be one of {', '.join(sorted(ROLE_ACTIONS))}.")
    if not isinstance(scope, str) or not (scope == "/" or scope.startswith(("keys/", "secrets/"))):
        raise BadRequest("'scope' must be '/', 'keys/<name>' or 'secrets/<name>'.")
    oid = service_principal_oid(app.client_id, context.state.vault.config.tenant_id)
    return Assignment(principal_oid=oid, role=role, scope=scope)


def assign_role(request: Request, context: Context, body: dict[str, Any]) -> Response:
    context.state.vault.assignments.add(_assignment(context, body))
    return vault_state(request, context, body)


def unassign_role(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """Remove one assignment, or with `"role": "*"` every assignment of the principal."""
    if body.get("role") == "*":
        app = _app(context, str(body.get("principal", "")))
        oid = service_principal_oid(app.client_id, context.state.vault.config.tenant_id)
        context.state.vault.assignments = {
            a for a in context.state.vault.assignments if a.principal_oid != oid
        }
    else:
        context.state.vault.assignments.discard(_assignment(context, body))
    return vault_state(request, context, body)


P = "/_sandbox/keyvault"
ROUTES = [
    Route(P, endpoint(vault_state), methods=["GET"]),
    Route(f"{P}/keys/{{name}}/rotate", endpoint(rotate_key), methods=["POST"]),
    Route(f"{P}/role-assignments", endpoint(assign_role), methods=["PUT"]),
    Route(f"{P}/role-assignments", endpoint(unassign_role), methods=["DELETE"]),
]
