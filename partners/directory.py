"""What the partner's directory says about a signed-in user, read through Microsoft Graph as that user.

Partner Center agent roles are memberships of the AdminAgents and SalesAgents groups, not directory
roles, so no ID token claim carries them: both the consent and the dashboard sign-in read
`/me/memberOf` with a delegated Graph token.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from partners.models import AgentRole
from tokens.identity import identity_http_client

ROLE_GROUPS = {"AdminAgents": AgentRole.ADMIN_AGENT, "SalesAgents": AgentRole.SALES_AGENT}


class DirectoryLookupFailed(Exception):
    """Graph refused a directory read. The message names the path and status only."""

    def __init__(self, path: str, status: int) -> None:
        super().__init__(f"Graph answered HTTP {status} when reading {path}")
        self.path = path
        self.status = status


def graph_get(*, access_token: str, path: str) -> dict[str, Any]:
    client = identity_http_client()
    try:
        response = client.get(
            f"{settings.GRAPH_BASE_URL.rstrip('/')}{path}",
            headers={"Authorization": f"Bearer {access_token}"},
        )
    finally:
        client.close()
    if response.status_code != 200:
        raise DirectoryLookupFailed(path, response.status_code)
    return dict(response.json())


def agent_role_get(*, graph_token: str) -> AgentRole | None:
    """The user's agent role; AdminAgents wins over SalesAgents. None for any other user."""
    groups = graph_get(access_token=graph_token, path="/v1.0/me/memberOf").get("value", [])
    names = {group.get("displayName") for group in groups}
    for group_name, role in ROLE_GROUPS.items():
        if group_name in names:
            return role
    return None
