"""Partner consent, end to end: start the authorization-code flow, then finish it safely.

Finishing verifies everything before anything is stored:
1. the flow belongs to this browser session and is used once (state), the provider's answer
   is not an error;
2. MSAL redeems the code (PKCE verifier, redirect URI, nonce);
3. the panel verifies the ID token itself (signature, issuer, audience, tenant, expiry, nonce) and
   requires `mfa` in `amr`;
4. each audience the application declares is proven by obtaining one access token with the new
   refresh token, and the directory tells us the consenting user's agent role (AdminAgents or
   SalesAgents, through Graph);
5. only then the partner and its grant are created or renewed, atomically, with audit events.
Any failure raises ConsentFailed, which the view renders as a page; nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from partners.directory import DirectoryLookupFailed, agent_role_get, graph_get
from partners.models import AgentRole
from tokens.audit import Actor
from tokens.failures import Failure, FailureClass
from tokens.identity import IssuedTokens, identity_call, msal_app_get, refresh_token_redeem
from tokens.idtoken import IdTokenInvalid, VerifiedIdentity, id_token_verify
from tokens.models import Application, AuditEvent, ConsentGrant
from tokens.vault import ConsentRecord, grant_record_consent


@dataclass
class ConsentFailed(Exception):
    """A consent that cannot complete. Every field is safe to show to the user."""

    status: int
    title: str
    message: str
    advice: str


def consent_scopes(application: Application) -> list[str]:
    return sorted({scope for scopes in application.audiences.values() for scope in scopes})


def consent_flow_start(*, application: Application, expected_tenant: str | None = None) -> dict[str, Any]:
    """Begin a consent. The returned flow goes into the server-side session; `auth_uri` is where
    the browser goes. prompt=login: a partner must sign in afresh (with MFA), never ride an
    existing browser session that may belong to another account. The answer comes back as a
    query (MSAL warns that it prefers form_post): a cross-site form POST would not carry the
    SameSite=Lax session cookie that holds this flow."""
    app = msal_app_get(application=application, tenant=expected_tenant or application.authority_tenant)
    flow: dict[str, Any] = app.initiate_auth_code_flow(
        consent_scopes(application), redirect_uri=application.redirect_uri, prompt="login"
    )
    flow["expected_tenant"] = expected_tenant
    return flow


def _provider_error(params: dict[str, str]) -> ConsentFailed:
    error = params.get("error", "")
    if error == "access_denied":
        return ConsentFailed(
            403,
            "Consent was cancelled",
            "The sign-in was cancelled, or consent to the application was declined.",
            "When you are ready, start again and accept the permissions to connect your partner account.",
        )
    if error in {"consent_required", "interaction_required", "login_required"}:
        return ConsentFailed(
            403,
            "Consent is required",
            "Microsoft Entra ID reports that consent for this application is still required.",
            "Sign in with an account allowed to consent for your organization (an admin agent) and accept.",
        )
    return ConsentFailed(
        400,
        "The sign-in did not complete",
        f"Microsoft Entra ID answered with the error '{error[:64]}'.",
        "Start again. If it keeps failing, contact the operator with the time of this attempt.",
    )


def _failure_page(failure: Failure, what: str) -> ConsentFailed:
    if failure.failure_class is FailureClass.TRANSIENT:
        return ConsentFailed(
            503,
            "Microsoft Entra ID is unavailable",
            f"The identity provider did not answer while {what}.",
            "Nothing was stored. Try again in a few minutes.",
        )
    return ConsentFailed(
        400,
        "The consent could not be completed",
        f"The identity provider refused the request while {what} ({failure.code}).",
        "Nothing was stored. Start again; if it keeps failing, contact the operator.",
    )


def code_redeem(
    *, application: Application, flow: dict[str, Any], params: dict[str, str], scopes: list[str]
) -> IssuedTokens:
    """Check the answer belongs to the flow of this browser session, then let MSAL redeem its code
    (PKCE verifier, redirect URI, nonce). Shared by the consent and the dashboard sign-in."""
    if not flow or not params.get("state") or params.get("state") != flow.get("state"):
        raise ConsentFailed(
            400,
            "This sign-in link has expired or was already used",
            "The answer from Microsoft Entra ID does not match a sign-in started in this browser.",
            "Start again.",
        )
    if "error" in params:
        raise _provider_error(params)
    if "code" not in params:
        raise invalid_identity("the answer carries neither a code nor an error")
    app = msal_app_get(
        application=application, tenant=flow.get("expected_tenant") or application.authority_tenant
    )
    try:
        outcome = identity_call(lambda: app.acquire_token_by_auth_code_flow(flow, params, scopes=scopes))
    except RuntimeError as error:  # MSAL's own nonce check
        raise invalid_identity("the sign-in does not belong to this session (nonce mismatch)") from error
    if isinstance(outcome, Failure):
        raise _failure_page(outcome, "redeeming the authorization code")
    if not outcome.id_token:
        raise invalid_identity("the identity provider returned no ID token")
    return outcome


def identity_verify_with_mfa(
    *, application: Application, flow: dict[str, Any], issued: IssuedTokens
) -> VerifiedIdentity:
    """The panel's own ID token verification (MSAL checks only the nonce), then MFA."""
    try:
        identity = id_token_verify(
            id_token=issued.id_token or "",
            authority_host=application.authority_host,
            client_id=application.client_id,
            raw_nonce=str(flow.get("nonce", "")),
            expected_tenant=flow.get("expected_tenant"),
        )
    except IdTokenInvalid as error:
        raise invalid_identity(str(error)) from error
    except (requests.RequestException, ValueError) as error:
        raise _failure_page(
            Failure(FailureClass.TRANSIENT, "JWKS", "keys unavailable"), "reading signing keys"
        ) from error
    if not identity.mfa:
        raise ConsentFailed(
            403,
            "Multi-factor authentication is required",
            "The Secure Application Model requires MFA for every sign-in, and this sign-in did not use it.",
            "Sign in again and complete multi-factor authentication.",
        )
    return identity


def invalid_identity(reason: str) -> ConsentFailed:
    return ConsentFailed(
        400,
        "We could not verify your sign-in",
        f"The sign-in answer failed verification: {reason}.",
        "Nothing was stored. Start again.",
    )


def _directory_failed(error: DirectoryLookupFailed) -> ConsentFailed:
    return ConsentFailed(
        502,
        "Microsoft Graph refused the directory lookup",
        f"{error}.",
        "Nothing was stored. Try again; if it keeps failing, contact the operator.",
    )


def agent_role_require(*, graph_token: str) -> AgentRole:
    try:
        role = agent_role_get(graph_token=graph_token)
    except DirectoryLookupFailed as error:
        raise _directory_failed(error) from error
    if role is not None:
        return role
    raise ConsentFailed(
        403,
        "Your account is not a partner agent",
        "Only members of AdminAgents or SalesAgents in your partner tenant can connect it.",
        "Ask your partner administrator to add you to AdminAgents, then start again.",
    )


def _prove_audiences(
    application: Application, identity: VerifiedIdentity, refresh_token: str
) -> tuple[str, dict[str, str]]:
    """Obtain one access token per declared audience; returns the newest refresh token and the
    access token per audience."""
    tokens: dict[str, str] = {}
    for audience in application.audiences:
        outcome = refresh_token_redeem(
            application=application, refresh_token=refresh_token, audience=audience, tenant=identity.tenant_id
        )
        if isinstance(outcome, Failure):
            raise _failure_page(outcome, f"proving access to {audience}")
        tokens[audience] = outcome.access_token
        refresh_token = outcome.refresh_token or refresh_token
    return refresh_token, tokens


def consent_flow_finish(
    *, application: Application, flow: dict[str, Any] | None, params: dict[str, str], actor_ip: str | None
) -> ConsentGrant:
    issued = code_redeem(
        application=application,
        flow=flow or {},
        params=params,
        scopes=application.scopes_for(application.consent_audience),
    )
    if not issued.refresh_token:
        raise invalid_identity("the identity provider returned no refresh token")
    identity = identity_verify_with_mfa(application=application, flow=flow or {}, issued=issued)
    refresh_token, access_tokens = _prove_audiences(application, identity, issued.refresh_token or "")
    if "graph" not in access_tokens:
        raise ConsentFailed(
            503,
            "The application is misconfigured",
            "The application does not declare the Microsoft Graph audience needed to read the directory.",
            "Contact the operator.",
        )
    role = agent_role_require(graph_token=access_tokens["graph"])
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
        mfa=identity.mfa,
        audiences=sorted(access_tokens),
        refresh_token=refresh_token,
    )
    actor = Actor(
        type=AuditEvent.ActorType.PARTNER_USER, id=identity.upn or identity.object_id, client_ip=actor_ip
    )
    return grant_record_consent(application=application, consent=record, actor=actor)
