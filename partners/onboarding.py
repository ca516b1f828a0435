"""Partner consent, end to end: start the authorization-code flow, then finish it safely.

Finishing verifies everything before anything is stored (partners.authflow does steps 1 to 3):
1. the answer belongs to this browser's flow and is used once; MSAL redeems the code for Partner
   Center (PKCE, redirect URI, nonce);
2. the panel verifies the ID token itself;
3. MFA and the consenting user's agent role come from Partner Center (its v1.0 access token's
   `amr`, and its own roles API), never from the ID token or a group's display name;
4. every other audience the application declares is proven with the new refresh token, and Graph
   names the organization;
5. who may consent: anyone who is an admin or sales agent may connect a tenant for the first time
   (the Secure Application Model lets either role consent); once a grant exists, only an admin agent
   may replace it or re-activate it. Replacing a grant the partner did not ask to renew waits for an
   explicit confirmation ("already connected by X on D: continuing replaces it"); meanwhile the
   verified consent waits sealed (Tink AEAD) in the shared cache for a few minutes, never in the
   session;
6. only then the partner and its grant are created or renewed, atomically, with audit events.
Any failure raises SignInRefused, which the view renders as a page; nothing is stored.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

import tink
from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables

from partners.authflow import (
    PARTNER_CENTER_AUDIENCE,
    SignInRefused,
    evidence_require,
    failure_page,
    flow_redeem,
    flow_start,
    identity_verify,
    invalid_identity,
    partner_center_scopes,
)
from partners.directory import DirectoryLookupFailed, graph_get
from partners.models import AgentRole
from tokens.audit import Actor
from tokens.encryption.keyset import keyset_get
from tokens.issuance.failures import Failure
from tokens.issuance.identity import refresh_token_redeem
from tokens.issuance.vault import ConsentNotAllowed, ConsentRecord, grant_record_consent
from tokens.models import Application, AuditEvent, ConsentGrant

RENEW_PURPOSE = "renew"
CONNECT_PURPOSE = "connect"
PENDING_SECONDS = 600
DEFAULT_SCOPE_SUFFIX = "/.default"


def consent_scopes_problem(audiences: dict[str, list[str]]) -> str | None:
    """Why Entra would refuse this consent request, or None. Entra refuses a request that combines
    `.default` with named scopes (AADSTS70011; docs/sandbox.md), so it is one or the other."""
    scopes = {scope for values in audiences.values() for scope in values}
    defaults = {scope for scope in scopes if scope.endswith(DEFAULT_SCOPE_SUFFIX)}
    if defaults and len(scopes) > 1:
        return (
            f"the consent would combine {', '.join(sorted(defaults))} with other scopes, which Microsoft Entra ID "
            "refuses (AADSTS70011)"
        )
    if not audiences.get(PARTNER_CENTER_AUDIENCE):
        return "no Partner Center scope is declared, and every consent and sign-in needs one"
    return None


def consent_scopes(application: Application) -> list[str]:
    problem = consent_scopes_problem(application.audiences)
    if problem is not None:
        raise SignInRefused(
            503,
            "The application is misconfigured",
            f"{problem[0].upper()}{problem[1:]}.",
            "Contact the operator.",
        )
    return sorted({scope for scopes in application.audiences.values() for scope in scopes})


def consent_flow_start(
    *, application: Application, expected_tenant: str | None = None, purpose: str = CONNECT_PURPOSE
) -> dict[str, Any]:
    return flow_start(
        application=application,
        scopes=consent_scopes(application),
        redirect_uri=application.redirect_uri,
        expected_tenant=expected_tenant,
        purpose=purpose,
    )


def _directory_failed(error: DirectoryLookupFailed) -> SignInRefused:
    return SignInRefused(
        502,
        "Microsoft Graph refused the directory lookup",
        f"{error}.",
        "Nothing was stored. Try again; if it keeps failing, contact the operator.",
    )


@sensitive_variables("refresh_token", "tokens", "outcome")
def _prove_audiences(
    application: Application, tenant_id: str, refresh_token: str
) -> tuple[str, dict[str, str]]:
    """Obtain one access token per declared audience other than Partner Center (the code redemption
    proved that one); returns the newest refresh token and the access token per audience."""
    tokens: dict[str, str] = {}
    for audience in application.audiences:
        if audience == PARTNER_CENTER_AUDIENCE:
            continue
        outcome = refresh_token_redeem(
            application=application, refresh_token=refresh_token, audience=audience, tenant=tenant_id
        )
        if isinstance(outcome, Failure):
            raise failure_page(outcome, f"proving access to {audience}")
        tokens[audience] = outcome.access_token
        refresh_token = outcome.refresh_token or refresh_token
    return refresh_token, tokens


def _not_allowed(error: ConsentNotAllowed) -> SignInRefused:
    return SignInRefused(
        403,
        "Only an admin agent can replace this connection",
        f"Your organization is already connected by {error.consented_by} on {error.consented_at:%Y-%m-%d}"
        f"{' (revoked since)' if error.revoked else ''}. A sales agent cannot replace or re-activate it.",
        "Nothing was changed. Ask an admin agent of your organization to renew the connection.",
    )


def consent_allowed_check(*, application: Application, consent: ConsentRecord) -> ConsentGrant | None:
    """The existing grant this consent would replace, if any; raises when the consenting user may
    not replace it. The vault checks the same rule again under the row lock."""
    grant = (
        ConsentGrant.objects.filter(partner__tenant_id=consent.tenant_id, application=application)
        .only("consented_by_upn", "consented_at", "state")
        .first()
    )
    if grant is not None and consent.consented_by_role != AgentRole.ADMIN_AGENT:
        raise _not_allowed(ConsentNotAllowed.for_grant(grant))
    return grant


@dataclass(frozen=True)
class ConsentVerified:
    """A verified consent; `replaces` is the grant it would replace when that needs a confirmation."""

    record: ConsentRecord
    replaces: ConsentGrant | None


@sensitive_variables("params", "issued", "refresh_token", "access_tokens", "record")
def consent_flow_verify(
    *, application: Application, flow: dict[str, Any] | None, params: dict[str, str]
) -> ConsentVerified:
    flow = flow or {}
    issued = flow_redeem(
        application=application, flow=flow, params=params, scopes=partner_center_scopes(application)
    )
    if not issued.refresh_token:
        raise invalid_identity("the identity provider returned no refresh token")
    identity = identity_verify(application=application, flow=flow, issued=issued)
    role = evidence_require(identity=identity, partner_center_token=issued.access_token)
    refresh_token, access_tokens = _prove_audiences(application, identity.tenant_id, issued.refresh_token)
    if "graph" not in access_tokens:
        raise SignInRefused(
            503,
            "The application is misconfigured",
            "The application does not declare the Microsoft Graph audience needed to read the organization.",
            "Contact the operator.",
        )
    try:
        organization = (
            graph_get(access_token=access_tokens["graph"], path="/v1.0/organization").get("value") or [{}]
        )[0]
    except DirectoryLookupFailed as error:
        raise _directory_failed(error) from error
    domains = organization.get("verifiedDomains") or [{}]
    record = ConsentRecord(
        tenant_id=identity.tenant_id,
        tenant_name=str(organization.get("displayName") or identity.tenant_id),
        tenant_domain=str(
            next((d.get("name") for d in domains if d.get("isDefault")), domains[0].get("name", ""))
        ),
        consented_by_oid=identity.object_id,
        consented_by_upn=identity.upn,
        consented_by_role=role,
        mfa=True,
        audiences=sorted([PARTNER_CENTER_AUDIENCE, *access_tokens]),
        refresh_token=refresh_token,
    )
    existing = consent_allowed_check(application=application, consent=record)
    needs_confirmation = existing is not None and flow.get("purpose") != RENEW_PURPOSE
    return ConsentVerified(record=record, replaces=existing if needs_confirmation else None)


def consent_record(*, application: Application, consent: ConsentRecord, actor_ip: str | None) -> ConsentGrant:
    actor = Actor(
        type=AuditEvent.ActorType.PARTNER_USER,
        id=consent.consented_by_upn or consent.consented_by_oid,
        client_ip=actor_ip,
    )
    try:
        return grant_record_consent(application=application, consent=consent, actor=actor)
    except ConsentNotAllowed as error:
        raise _not_allowed(error) from error


def _pending_key(pending_id: str) -> str:
    return f"consent-pending:{pending_id}"


def consent_pending_put(*, consent: ConsentRecord) -> str:
    """Keep a verified consent until its user confirms; returns the id the session keeps. Sealed, so
    the refresh token never rests in the clear, neither in the cache nor in the session."""
    pending_id = secrets.token_urlsafe(24)
    key = _pending_key(pending_id)
    sealed = keyset_get().primitive.encrypt(json.dumps(dataclasses.asdict(consent)).encode(), key.encode())
    cache.set(key, sealed, PENDING_SECONDS)
    return pending_id


def _pending_expired() -> SignInRefused:
    return SignInRefused(
        400,
        "This confirmation has expired",
        f"A consent waits for confirmation for {PENDING_SECONDS // 60} minutes only, and once.",
        "Nothing was changed. Start again.",
    )


def _pending_open(key: str, sealed: bytes) -> ConsentRecord:
    try:
        values = json.loads(keyset_get().primitive.decrypt(sealed, key.encode()))
    except (tink.TinkError, ValueError) as error:
        raise invalid_identity("the pending consent could not be read") from error
    values["consented_by_role"] = AgentRole(values["consented_by_role"])
    return ConsentRecord(**values)


def consent_pending_peek(*, pending_id: str) -> ConsentRecord:
    """The pending consent, to show what continuing would replace; it stays pending."""
    key = _pending_key(pending_id)
    sealed = cache.get(key) if pending_id else None
    if sealed is None:
        raise _pending_expired()
    return _pending_open(key, sealed)


def consent_pending_take(*, pending_id: str) -> ConsentRecord:
    """The pending consent, once: a second confirm (or one after the time limit) finds nothing. Only
    the request whose delete removed the entry may use it, so two confirms racing each other cannot
    both record the consent."""
    key = _pending_key(pending_id)
    sealed = cache.get(key) if pending_id else None
    if sealed is None or not cache.delete(key):
        raise _pending_expired()
    return _pending_open(key, sealed)


def consent_pending_discard(*, pending_id: str) -> None:
    cache.delete(_pending_key(pending_id))
