"""Microsoft Graph read as the consenting user: the organization's name and domains.

Agent roles are not read here: a group's display name proves nothing (partners.partner_center).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from tokens.issuance.identity import identity_http_client


class DirectoryLookupFailed(Exception):
    """Graph refused a directory read. The message names the path and status only."""

    def __init__(self, path: str, status: int, what: str = "") -> None:
        super().__init__(f"Graph answered HTTP {status}{f' with {what}' if what else ''} when reading {path}")
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
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise DirectoryLookupFailed(path, response.status_code, "an unreadable answer")
    return body
