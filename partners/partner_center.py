"""What Partner Center says about the person signing in, asked with that person's Partner Center token.

Two pieces of evidence come from here, and neither can be produced by a partner user:

* **MFA**: the v1.0 Partner Center access token carries `amr`, and Partner Center itself refuses
  App+User calls whose token lacks `mfa` in it (HTTP 401, error code 900421). The panel reads the
  claim (as Microsoft's `Test-PartnerSecurityRequirement` does) and then makes one real call, which
  Partner Center only answers if it accepts the MFA. v2.0 ID tokens carry no `amr` at all.
* **Agent role**: Partner Center's own partner roles and their members (`GET /v1/roles`, then
  `GET /v1/roles/{id}/usermembers`, page by page); for a user Partner Center does not let read them,
  whether it serves him the partner's organization profile. A group named "AdminAgents" proves
  nothing: names are not unique and, by default, any member of a tenant may create a security group.

docs/security.md gives the sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings

from partners.models import AgentRole
from tokens.issuance.identity import identity_http_client

PARTNER_CENTER_RESOURCE = "https://api.partnercenter.microsoft.com"
PARTNER_CENTER_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"
MFA_REQUIRED_CODE = "900421"
# Partner Center's role names for the two roles that may use the panel; the first found wins.
ROLE_NAMES = {"admin agent": AgentRole.ADMIN_AGENT, "sales agent": AgentRole.SALES_AGENT}
# A role with more members than this many pages is not plausible; stop rather than loop forever.
MAX_MEMBER_PAGES = 200
# A role id goes into a URL path: only the characters of Partner Center's ids may.
_ROLE_ID = re.compile(r"[A-Za-z0-9-]{1,64}\Z")


class PartnerCenterRefused(Exception):
    """Partner Center answered with an error. `code` is Partner Center's error code (e.g. 900421)."""

    def __init__(self, path: str, status: int, code: str) -> None:
        super().__init__(f"Partner Center answered HTTP {status} (code {code or 'none'}) for {path}")
        self.path = path
        self.status = status
        self.code = code

    @property
    def mfa_required(self) -> bool:
        return self.status == 401 and self.code == MFA_REQUIRED_CODE


class PartnerCenterMalformed(Exception):
    """Partner Center answered 200 with a body the panel cannot read."""


@dataclass(frozen=True)
class TokenEvidence:
    """What the Partner Center access token itself claims about the sign-in."""

    tenant_id: str
    object_id: str
    mfa: bool


def token_evidence_read(*, access_token: str) -> TokenEvidence | None:
    """The claims of a Partner Center access token the panel just received from the token endpoint
    (over TLS, in answer to its own request), or None when it is not a v1.0 Partner Center token.
    The signature is Partner Center's to check: the call in `agent_role_get` makes it do so."""
    try:
        claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    audience = str(claims.get("aud", "")).rstrip("/")
    if claims.get("ver") != "1.0" or audience not in (PARTNER_CENTER_RESOURCE, PARTNER_CENTER_APP_ID):
        return None
    methods = claims.get("amr")
    return TokenEvidence(
        tenant_id=str(claims.get("tid", "")),
        object_id=str(claims.get("oid", "")),
        mfa=isinstance(methods, list) and "mfa" in methods,
    )


def _get(*, access_token: str, path: str, continuation: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    if continuation:
        headers["MS-ContinuationToken"] = continuation
    client = identity_http_client()
    try:
        response = client.get(f"{settings.PARTNER_CENTER_BASE_URL.rstrip('/')}{path}", headers=headers)
    finally:
        client.close()
    if response.status_code != 200:
        try:
            code = str(response.json().get("code", ""))
        except (ValueError, AttributeError):
            code = ""
        raise PartnerCenterRefused(path, response.status_code, code[:32])
    try:
        body = response.json()
    except ValueError as error:
        raise PartnerCenterMalformed(f"{path} did not answer JSON") from error
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise PartnerCenterMalformed(f"{path} did not answer a collection")
    return body


def _next_page(page: dict[str, Any], first_path: str) -> tuple[str, str] | None:
    """Partner Center's seek-based paging: `links.next` names the path of the next page and the
    MS-ContinuationToken header to send with it. Only a path below the first one is followed."""
    following = (page.get("links") or {}).get("next") or {}
    uri = str(following.get("uri", ""))
    token = next(
        (
            str(header.get("value", ""))
            for header in following.get("headers") or []
            if isinstance(header, dict) and header.get("key") == "MS-ContinuationToken"
        ),
        str(page.get("continuationToken") or ""),
    )
    if not uri or not token:
        return None
    if urlsplit(uri).path != first_path:
        raise PartnerCenterMalformed("the next page of a collection points elsewhere")
    return uri, token


def _role_has_member(*, access_token: str, role_id: str, object_id: str) -> bool:
    first_path = f"/v1/roles/{role_id}/usermembers"
    path, continuation = first_path, None
    for _ in range(MAX_MEMBER_PAGES):
        page = _get(access_token=access_token, path=path, continuation=continuation)
        if any(str(member.get("id", "")).lower() == object_id.lower() for member in page.get("items", [])):
            return True
        following = _next_page(page, first_path)
        if following is None:
            return False
        path, continuation = following
    raise PartnerCenterMalformed("the role's member list does not end")


def agent_role_get(*, access_token: str, object_id: str) -> AgentRole | None:
    """The user's agent role according to Partner Center, None for any other user. Raises
    PartnerCenterRefused (code 900421 when Partner Center does not accept the token's MFA).

    Partner Center's role lists decide when it lets the user read them (admin agent wins). Who may
    read them is not documented; where Partner Center refuses them (403), the user is no admin agent,
    and is a sales agent only if Partner Center serves him the partner's organization profile, which
    it gives to admin and sales agents only (docs/security.md)."""
    try:
        roles = _get(access_token=access_token, path="/v1/roles").get("items", [])
    except PartnerCenterRefused as error:
        if error.status != 403:
            raise
        return _sales_agent_probe(access_token=access_token)
    by_role: dict[AgentRole, str] = {}
    for role in roles:
        agent_role = ROLE_NAMES.get(" ".join(str(role.get("name", "")).lower().split()))
        if agent_role is not None and _ROLE_ID.match(str(role.get("id", ""))):
            by_role[agent_role] = str(role["id"])
    for agent_role in (AgentRole.ADMIN_AGENT, AgentRole.SALES_AGENT):
        role_id = by_role.get(agent_role)
        if role_id and _role_has_member(access_token=access_token, role_id=role_id, object_id=object_id):
            return agent_role
    return None


def _sales_agent_probe(*, access_token: str) -> AgentRole | None:
    try:
        _get(access_token=access_token, path="/v1/profiles/organization")
    except PartnerCenterRefused as error:
        if error.status == 403:
            return None
        raise
    return AgentRole.SALES_AGENT
