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
    # Delegated permissions only an administrator may grant, for the whole tenant (docs/sandbox.md).
    admin_consent: frozenset[str] = frozenset()

    def describe(self, permission: str) -> str:
        return self.permissions.get(permission, f"Use the '{permission}' permission of {self.display_name}")


PARTNER_CENTER = Resource(
    uri="https://api.partnercenter.microsoft.com",
    app_id="fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd",
    display_name="Microsoft Partner Center",
    permissions={"user_impersonation": "Access Partner Center as you: customers, orders and subscriptions"},
    # Microsoft does not say whether user_impersonation needs admin consent: the sandbox does the
    # stricter thing and requires it.
    admin_consent=frozenset({"user_impersonation"}),
)
GRAPH = Resource(
    uri="https://graph.microsoft.com",
    app_id="00000003-0000-0000-c000-000000000000",
    display_name="Microsoft Graph",
    permissions={
        "User.Read": "Sign you in and read your profile",
        "Directory.Read.All": "Read directory data of your organization",
        "Directory.AccessAsUser.All": "Access the directory as you",
        "GroupMember.Read.All": "Read group memberships of your organization",
        "DelegatedAdminRelationship.Read.All": "Read your organization's delegated admin relationships with customers",
    },
    # Microsoft Graph permissions reference: "Admin consent required" Yes for these, No for User.Read.
    admin_consent=frozenset(
        {
            "Directory.Read.All",
            "Directory.AccessAsUser.All",
            "GroupMember.Read.All",
            "DelegatedAdminRelationship.Read.All",
        }
    ),
)
ARM = Resource(
    uri="https://management.azure.com",
    app_id="797f4846-ba00-4fd7-ba43-dac1f8f63013",
    display_name="Azure Service Management",
    permissions={"user_impersonation": "Access Azure Resource Manager as you"},
    # No Microsoft page reachable here says whether it needs admin consent: the stricter choice.
    admin_consent=frozenset({"user_impersonation"}),
)

# Azure Key Vault's data plane: the panel asks for app-only tokens (client credentials) for it. Its
# well-known app id is in Learn "Verify first-party Microsoft applications in sign-in reports".
KEY_VAULT = Resource(
    uri="https://vault.azure.net",
    app_id="cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
    display_name="Azure Key Vault",
    permissions={"user_impersonation": "Access Azure Key Vault as you"},
    admin_consent=frozenset({"user_impersonation"}),
)

RESOURCES: dict[str, Resource] = {r.uri: r for r in (PARTNER_CENTER, GRAPH, ARM, KEY_VAULT)}


def resource_by_uri_or_app_id(value: str) -> Resource | None:
    """v1 `resource=` may name the App ID URI (with or without trailing slash) or the app id GUID."""
    value = value.rstrip("/")
    if value in RESOURCES:
        return RESOURCES[value]
    return next((r for r in RESOURCES.values() if r.app_id == value), None)


def needs_admin_consent(scope: str) -> bool:
    """`scope` is a full permission scope (`https://graph.microsoft.com/User.Read`)."""
    resource, permission = split_scope(scope)
    return resource is not None and permission in resource.admin_consent


def split_scope(scope: str) -> tuple[Resource | None, str]:
    """`https://graph.microsoft.com/User.Read` -> (GRAPH, "User.Read"); unknown resource -> (None, scope)."""
    base, _, permission = scope.rpartition("/")
    resource = resource_by_uri_or_app_id(base) if base else None
    return resource, permission if resource else scope


@dataclass(frozen=True)
class PartnerRole:
    key: str  # as in the directory file's partner_center_roles
    id: str  # sandbox-made: Microsoft does not publish the ids, so clients must match roles by name
    name: str


PARTNER_ROLES = (
    PartnerRole("AdminAgent", "9a8929e0-e727-4f00-92e6-732dc99510a4", "Admin Agent"),
    PartnerRole("SalesAgent", "0b05566f-a987-41a5-b602-06677e9cdf29", "Sales Agent"),
    PartnerRole("HelpdeskAgent", "70b74b9d-71fc-44c0-8313-18dc230ba543", "Helpdesk Agent"),
)
