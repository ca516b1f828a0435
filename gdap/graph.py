"""Read a partner's GDAP relationships and their access assignments from Microsoft Graph.

Every page is read: the first URL is ours, each next one is the whole `@odata.nextLink` of the page
before (Graph's paging guidance), followed only while it stays on the Graph host the panel is
configured with and below the same path. The bearer token never goes anywhere else: a nextLink to
another host, a redirect, a loop, an endless list or a page that is not Graph's shape stops the read
with a `GraphReadError` naming what was wrong, and the caller keeps what it had.

Nothing here writes: gdap.inventory decides what a complete read changes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from tokens.issuance.identity import IdentityProviderHttpError, identity_http_client

RELATIONSHIPS_PATH = "/v1.0/tenantRelationships/delegatedAdminRelationships"
# A relationship id goes into the access assignments' URL path: only the characters of Graph's ids
# ("<GUID>-<GUID>") may.
_RELATIONSHIP_ID = re.compile(r"[A-Za-z0-9-]{1,128}\Z")
# At most this many pages per list. Graph serves up to 300 relationships a page; a list longer than
# this is a server that never stops, not a partner.
MAX_PAGES = 500


class GraphReadError(Exception):
    """A read that did not complete. `code` is stable (stored on the inventory, shown to staff);
    `message` is safe to show; `transient` says whether trying again later may help."""

    def __init__(
        self, code: str, message: str, *, transient: bool = False, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class AssignmentRead:
    group: str  # accessContainerId
    type: str  # accessContainerType, e.g. securityGroup
    status: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class RelationshipRead:
    id: str
    display_name: str
    customer_tenant_id: str | None
    customer_name: str
    status: str
    roles: tuple[str, ...]
    duration: str
    auto_extend_duration: str
    requested_at: datetime | None
    activated_at: datetime | None
    ends_at: datetime | None


def relationships_read(*, access_token: str) -> list[RelationshipRead]:
    """Every relationship Graph lists for the token's partner tenant, all pages."""
    return [_relationship(item) for item in _items(access_token=access_token, path=RELATIONSHIPS_PATH)]


def access_assignments_read(*, access_token: str, relationship_id: str) -> list[AssignmentRead]:
    """Every access assignment of one relationship, all pages."""
    if not _RELATIONSHIP_ID.match(relationship_id):
        raise GraphReadError(
            "MALFORMED", f"a relationship id Graph sent is not an id: {relationship_id[:80]!r}"
        )
    path = f"{RELATIONSHIPS_PATH}/{relationship_id}/accessAssignments"
    return [_assignment(item) for item in _items(access_token=access_token, path=path)]


def _graph_origin() -> tuple[str, str, str]:
    parts = urlsplit(settings.GRAPH_BASE_URL)
    return parts.scheme, parts.netloc.lower(), parts.path.rstrip("/")


def _items(*, access_token: str, path: str) -> Iterator[dict[str, Any]]:
    scheme, host, base_path = _graph_origin()
    first = f"{scheme}://{host}{base_path}{path}"
    url, seen = first, set()
    client = identity_http_client()
    try:
        for _ in range(MAX_PAGES):
            seen.add(url)
            page = _page(client, url, access_token=access_token, path=path)
            values = page.get("value")
            if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
                raise GraphReadError("MALFORMED", f"a page of {path} has no list of objects in 'value'")
            yield from values
            following = page.get("@odata.nextLink")
            if following is None:
                return
            url = _next_url(following, scheme=scheme, host=host, path=base_path + path)
            if url in seen:
                raise GraphReadError(
                    "NEXT_LINK_LOOP", f"the next page of {path} points back to a page already read"
                )
        raise GraphReadError("TOO_MANY_PAGES", f"{path} did not end within {MAX_PAGES} pages")
    finally:
        client.close()


def _next_url(following: object, *, scheme: str, host: str, path: str) -> str:
    """The nextLink, if it is an absolute URL on the configured Graph host and path; refused otherwise,
    before anything is sent to it."""
    if not isinstance(following, str):
        raise GraphReadError("MALFORMED", "@odata.nextLink is not a string")
    parts = urlsplit(following)
    if parts.scheme != scheme or parts.netloc.lower() != host or parts.username or parts.password:
        raise GraphReadError(
            "FOREIGN_NEXT_LINK",
            f"the next page of {path} is on another host ({parts.scheme}://{parts.hostname or '?'}); not followed",
        )
    if parts.path != path:
        raise GraphReadError(
            "FOREIGN_NEXT_LINK", f"the next page of {path} is another resource; not followed"
        )
    return following


def _page(client: Any, url: str, *, access_token: str, path: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    try:
        response = client.get(url, headers=headers, allow_redirects=False)
    except IdentityProviderHttpError as error:
        raise GraphReadError(
            f"HTTP_{error.status}",
            f"Graph answered HTTP {error.status} to {path}; the read will be tried again",
            transient=True,
            retry_after=error.retry_after,
        ) from error
    except requests.Timeout as error:
        raise GraphReadError("TIMEOUT", f"Graph did not answer {path} in time", transient=True) from error
    except requests.RequestException as error:
        raise GraphReadError(
            "CONNECTION", f"Graph could not be reached for {path}", transient=True
        ) from error
    if response.status_code != 200:
        raise _refusal(response, path)
    try:
        body = response.json()
    except ValueError as error:
        raise GraphReadError("MALFORMED", f"Graph's answer to {path} is not JSON") from error
    if not isinstance(body, dict):
        raise GraphReadError("MALFORMED", f"Graph's answer to {path} is not a JSON object")
    return body


def _refusal(response: requests.Response, path: str) -> GraphReadError:
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code", ""))[:64]
    except (ValueError, AttributeError):
        code = ""
    status = response.status_code
    if status == 403:
        return GraphReadError(
            "GRAPH_403",
            f"Graph refused to list the GDAP relationships (403 {code or 'Forbidden'}): the partner's consent "
            "does not include DelegatedAdminRelationship.Read.All. A Global Administrator of the partner "
            "must grant it to the application (admin consent), then an admin agent renews the consent.",
        )
    if status == 401:
        return GraphReadError("GRAPH_401", f"Graph did not accept the access token for {path} (401 {code}).")
    if 300 <= status < 400:
        return GraphReadError(
            "GRAPH_REDIRECT", f"Graph answered {path} with a redirect ({status}); not followed"
        )
    return GraphReadError(f"GRAPH_{status}", f"Graph answered HTTP {status} {code} to {path}".rstrip())


# --- the shape of one item ---------------------------------------------------------------------


def _text(item: dict[str, Any], name: str, *, required: bool = True, limit: int = 256) -> str:
    value = item.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise GraphReadError("MALFORMED", f"a GDAP item's {name!r} is missing or not text")
    return value


def _guid(value: object, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as error:
        raise GraphReadError("MALFORMED", f"a GDAP item's {what} is not a GUID") from error


def _when(item: dict[str, Any], name: str) -> datetime | None:
    value = item.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as error:
        raise GraphReadError("MALFORMED", f"a GDAP item's {name!r} is not a date and time") from error
    if moment.tzinfo is None:
        raise GraphReadError("MALFORMED", f"a GDAP item's {name!r} has no time zone")
    return moment


def _roles(details: object) -> tuple[str, ...]:
    if details is None:
        return ()
    roles = details.get("unifiedRoles") if isinstance(details, dict) else None
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise GraphReadError("MALFORMED", "a GDAP item's accessDetails has no list of unifiedRoles")
    return tuple(_guid(role.get("roleDefinitionId"), "roleDefinitionId") for role in roles)


def _relationship(item: dict[str, Any]) -> RelationshipRead:
    relationship_id = _text(item, "id", limit=128)
    if not _RELATIONSHIP_ID.match(relationship_id):
        raise GraphReadError(
            "MALFORMED", f"a relationship id Graph sent is not an id: {relationship_id[:80]!r}"
        )
    customer = item.get("customer")
    if customer is not None and not isinstance(customer, dict):
        raise GraphReadError("MALFORMED", "a relationship's customer is not an object")
    tenant = (customer or {}).get("tenantId")
    return RelationshipRead(
        id=relationship_id,
        display_name=_text(item, "displayName", limit=200),
        customer_tenant_id=_guid(tenant, "customer tenantId") if tenant else None,
        customer_name=_text(customer or {}, "displayName", required=False),
        status=_text(item, "status", limit=64),
        roles=_roles(item.get("accessDetails")),
        duration=_text(item, "duration", required=False, limit=32),
        auto_extend_duration=_text(item, "autoExtendDuration", required=False, limit=32),
        requested_at=_when(item, "createdDateTime"),
        activated_at=_when(item, "activatedDateTime"),
        ends_at=_when(item, "endDateTime"),
    )


def _assignment(item: dict[str, Any]) -> AssignmentRead:
    container = item.get("accessContainer")
    if not isinstance(container, dict):
        raise GraphReadError("MALFORMED", "an access assignment has no accessContainer")
    return AssignmentRead(
        group=_guid(container.get("accessContainerId"), "accessContainerId"),
        type=_text(container, "accessContainerType", limit=64),
        status=_text(item, "status", limit=64),
        roles=_roles(item.get("accessDetails")),
    )
