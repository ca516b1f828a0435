"""The resource APIs the sandbox knows: Partner Center, Microsoft Graph, Azure Resource Manager.

These are Microsoft first-party resources; their tokens are v1 JWTs (entra-protocol.md 5.1), so the
sandbox mints v1 access tokens for all three. The plain-word descriptions are what the consent page
shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


@dataclass(frozen=True)
class Resource:
    uri: str
    app_id: str
    display_name: str
    permissions: dict[str, str] = field(default_factory=dict)

    def describe(self, permission: str) -> str:
        return self.permissions.get(permission, f"Use the '{permission}' permission of {self.display_name}")


PARTNER_CENTER = Resource(
    uri="https://api.partnercenter.microsoft.com",
    app_id="fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd",
    display_name="Microsoft Partner Center",
    permissions={"user_impersonation": "Access Partner Center as you: customers, orders and subscriptions"},
)
GRAPH = Resource(
    uri="https://graph.microsoft.com",
    app_id="00000003-0000-0000-c000-000000000000",
    display_name="Microsoft Graph",
    permissions={
        "User.Read": "Sign you in and read your profile",
        "Directory.Read.All": "Read directory data of your organization",
        "Directory.AccessAsUser.All": "Access the directory as you",
    },
)
ARM = Resource(
    uri="https://management.azure.com",
    app_id="797f4846-ba00-4fd7-ba43-dac1f8f63013",
    display_name="Azure Service Management",
    permissions={"user_impersonation": "Access Azure Resource Manager as you"},
)

RESOURCES: dict[str, Resource] = {r.uri: r for r in (PARTNER_CENTER, GRAPH, ARM)}


def resource_by_uri_or_app_id(value: str) -> Resource | None:
    """v1 `resource=` may name the App ID URI (with or without trailing slash) or the app id GUID."""
    value = value.rstrip("/")
    if value in RESOURCES:
        return RESOURCES[value]
    return next((r for r in RESOURCES.values() if r.app_id == value), None)


def split_scope(scope: str) -> tuple[Resource | None, str]:
    """`https://graph.microsoft.com/User.Read` -> (GRAPH, "User.Read"); unknown resource -> (None, scope)."""
    base, _, permission = scope.rpartition("/")
    resource = resource_by_uri_or_app_id(base) if base else None
    return resource, permission if resource else scope
