"""Scope strings -> (resource, permissions), with Entra's errors for bad scopes (entra-protocol.md 2.6)."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.catalog import GRAPH, OIDC_SCOPES, Resource, split_scope
from sandbox.directory import App
from sandbox.errors import EntraError


@dataclass(frozen=True)
class ScopeRequest:
    oidc: frozenset[str]
    by_resource: dict[str, frozenset[str]]  # resource URI -> permissions (".default" kept as is)


def parse_scopes(scope: str, tenant_name: str) -> ScopeRequest:
    oidc: set[str] = set()
    by_resource: dict[str, set[str]] = {}
    for item in scope.split():
        if item in OIDC_SCOPES:
            oidc.add(item)
            continue
        resource: Resource | None
        if "/" not in item:
            # A bare permission name means Microsoft Graph, as in Entra ("User.Read").
            resource, permission = GRAPH, item
        else:
            resource, permission = split_scope(item)
        if resource is None:
            raise EntraError(
                "invalid_resource",
                500011,
                f"The resource principal named {item.rpartition('/')[0]} was not found in the tenant named "
                f"{tenant_name}. This can happen if the application has not been installed by the administrator "
                "of the tenant or consented to by any user in the tenant. You might have sent your authentication "
                "request to the wrong tenant.",
            )
        by_resource.setdefault(resource.uri, set()).add(permission)
    parsed = ScopeRequest(frozenset(oidc), {uri: frozenset(p) for uri, p in by_resource.items()})
    _refuse_mixed_default(parsed, scope)
    return parsed


def _refuse_mixed_default(request: ScopeRequest, scope: str) -> None:
    """ "Clients can't combine static (.default) consent and dynamic consent in a single request"
    (Microsoft Learn, scopes and permissions, "The .default scope"): Entra answers AADSTS70011."""
    permissions = [p for perms in request.by_resource.values() for p in perms]
    if ".default" in permissions and len(permissions) > 1:
        raise EntraError(
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' isn't valid. The scope {scope} isn't valid: "
            ".default can't be combined with other scopes.",
        )


def requested_scopes(app: App, request: ScopeRequest) -> set[str]:
    """The full permission scopes a consent covers: `.default` stands for every registered permission
    of its resource."""
    scopes: set[str] = set()
    for uri, permissions in request.by_resource.items():
        names = app.permissions.get(uri, frozenset()) if ".default" in permissions else permissions
        scopes |= {f"{uri}/{p}" for p in names}
    return scopes


def single_resource(request: ScopeRequest, scope: str) -> str | None:
    if len(request.by_resource) > 1:
        raise EntraError(
            "invalid_scope",
            28000,
            f"Provided value for the input parameter scope is not valid because it contains more than one "
            f"resource. Scope {scope} is not valid.",
        )
    return next(iter(request.by_resource), None)


def check_registered(app: App, request: ScopeRequest, scope: str) -> None:
    """Every requested permission must be one the app registration declares (the sandbox has no
    dynamic consent to permissions outside the registration)."""
    for uri, permissions in request.by_resource.items():
        registered = app.permissions.get(uri, frozenset())
        unknown = permissions - registered - {".default"}
        if not registered or unknown:
            raise EntraError(
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' isn't valid. The scope {scope} isn't valid.",
            )
