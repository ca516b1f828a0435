"""The authorization-code flow that the consent and the dashboard sign-in share, and the evidence both
require about the person who signs in.

1. `flow_start`: MSAL builds the authorize request (state, nonce, PKCE S256); prompt=login, so a
   partner signs in afresh and never rides a browser session that may belong to someone else.
2. `flow_redeem`: the answer must belong to the flow kept in this browser's session (state, used
   once); MSAL redeems the code for Partner Center (PKCE verifier, redirect URI, nonce).
3. `identity_verify`: the panel verifies the v2.0 ID token itself (MSAL checks only its nonce).
4. `evidence_require`: MFA and the agent role, from Partner Center (partners.partner_center):
   the v1.0 Partner Center access token must be for this user and tenant with `mfa` in `amr`, and
   Partner Center must accept it and name the user an admin or sales agent.
Every refusal is a `SignInRefused`, whose fields are safe to show to the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.http import QueryDict
from django.views.decorators.debug import sensitive_variables

from partners.models import AgentRole
from partners.partner_center import (
    PartnerCenterMalformed,
    PartnerCenterRefused,
    agent_role_get,
    token_evidence_read,
)
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import IssuedTokens, identity_call, msal_app_get
from tokens.issuance.idtoken import IdTokenInvalid, SigningKeysUnavailable, VerifiedIdentity, id_token_verify
from tokens.models import Application

PARTNER_CENTER_AUDIENCE = "partner_center"
# Entra's codes for "an administrator must consent first" (the permission needs admin consent, or
# the tenant does not let users consent): entra-protocol.md 3.3, docs/sandbox.md.
ADMIN_CONSENT_CODES = ("AADSTS65001", "AADSTS90094", "AADSTS90095", "AADSTS900941")
# Entra's codes for "MFA is required and this user has no method to do it with": 50079
# UserStrongAuthEnrollmentRequired ("a managed user needs to register security info") and 50072
# UserStrongAuthEnrollmentRequiredInterrupt (error-code reference; docs/sandbox.md). 50076 and 50074
# mean MFA is required and the user has a method: he must complete it.
MFA_REGISTRATION_CODES = frozenset({50079, 50072})
MFA_REQUIRED_CODES = frozenset({50076, 50074})
# Microsoft's short link to the user's own "Security info" page, where a method is registered.
MFA_SETUP_URL = "https://aka.ms/mfasetup"
_AADSTS = re.compile(r"AADSTS(\d+)")


@dataclass
class SignInRefused(Exception):
    """A consent or sign-in that cannot complete. `offer_onboarding` when the user's tenant has not
    connected yet; `admin_consent_needed` when an administrator must grant consent first."""

    status: int
    title: str
    message: str
    advice: str
    offer_onboarding: bool = False
    admin_consent_needed: bool = False
    help_url: str = ""  # a page of Microsoft's that fixes it (a constant of ours, never from input)
    help_label: str = ""


def callback_params(query: QueryDict) -> dict[str, str]:
    """The provider's answer as single values; a repeated parameter is a tampered answer."""
    if any(len(values) > 1 for _, values in query.lists()):
        raise SignInRefused(
            400,
            "The sign-in answer is malformed",
            "A parameter appears more than once in the answer.",
            "Start again.",
        )
    return {key: query.get(key, "") for key in query}


def partner_center_scopes(application: Application) -> list[str]:
    scopes = application.scopes_for(PARTNER_CENTER_AUDIENCE)
    if not scopes:
        raise SignInRefused(
            503,
            "The application is misconfigured",
            "The application does not declare the Partner Center audience, which every sign-in needs.",
            "Contact the operator.",
        )
    return scopes


def flow_start(
    *,
    application: Application,
    scopes: list[str],
    redirect_uri: str,
    expected_tenant: str | None = None,
    purpose: str,
) -> dict[str, Any]:
    """Begin a flow; the returned dict goes into the server-side session and `auth_uri` is where the
    browser goes. The answer comes back as a query (MSAL warns that it prefers form_post): a
    cross-site form POST would not carry the SameSite=Lax session cookie that holds this flow."""
    app = msal_app_get(application=application, tenant=expected_tenant or application.authority_tenant)
    flow: dict[str, Any] = app.initiate_auth_code_flow(scopes, redirect_uri=redirect_uri, prompt="login")
    flow["expected_tenant"] = expected_tenant
    flow["purpose"] = purpose
    return flow


def mfa_registration_needed() -> SignInRefused:
    return SignInRefused(
        403,
        "Register a multi-factor authentication method first",
        "Microsoft Entra ID reports that your account has no multi-factor authentication method registered. "
        "Every sign-in here needs MFA, and without a method you cannot complete it.",
        f"Open {MFA_SETUP_URL}, sign in with the same account and choose Security info, then Add sign-in "
        "method (for example the Microsoft Authenticator app). Then start again here. If that page does not "
        "let you add a method, ask your administrator to allow it.",
        help_url=MFA_SETUP_URL,
        help_label="Register a method in Security info",
    )


def _entra_code(description: str) -> int | None:
    """The AADSTS number a redirected error starts its description with (an authorize redirect
    carries no `error_codes`)."""
    found = _AADSTS.match(description.strip())
    return int(found.group(1)) if found else None


def _provider_error(params: dict[str, str]) -> SignInRefused:
    error = params.get("error", "")
    description = params.get("error_description", "")
    number = _entra_code(description)
    if number in MFA_REGISTRATION_CODES:
        return mfa_registration_needed()
    if number in MFA_REQUIRED_CODES:
        return _mfa_refused()
    if any(code in description for code in ADMIN_CONSENT_CODES):
        return SignInRefused(
            403,
            "An administrator of your organization must approve this application first",
            "Some of the permissions the application asks for need an administrator's consent for the whole "
            "organization, and it has not been given yet.",
            "Ask a Global Administrator (or Privileged Role Administrator) of your partner tenant to grant "
            "consent with the button below, then connect again as an admin agent.",
            admin_consent_needed=True,
        )
    if error == "access_denied":
        return SignInRefused(
            403,
            "Consent was cancelled",
            "The sign-in was cancelled, or consent to the application was declined.",
            "When you are ready, start again and accept the permissions to connect your partner account.",
        )
    if error in {"consent_required", "interaction_required", "login_required"}:
        return SignInRefused(
            403,
            "Consent is required",
            "Microsoft Entra ID reports that consent for this application is still required.",
            "Sign in with an account allowed to consent for your organization (an admin agent) and accept.",
        )
    return SignInRefused(
        400,
        "The sign-in did not complete",
        f"Microsoft Entra ID answered with the error '{error[:64]}'.",
        "Start again. If it keeps failing, contact the operator with the time of this attempt.",
    )


def failure_page(failure: Failure, what: str) -> SignInRefused:
    number = _entra_code(failure.code)
    if number in MFA_REGISTRATION_CODES:
        return mfa_registration_needed()
    if number in MFA_REQUIRED_CODES:
        return _mfa_refused()
    if failure.failure_class is FailureClass.TRANSIENT:
        return SignInRefused(
            503,
            "Microsoft Entra ID is unavailable",
            f"The identity provider did not answer while {what}.",
            "Nothing was stored. Try again in a few minutes.",
        )
    return SignInRefused(
        400,
        "The sign-in could not be completed",
        f"The identity provider refused the request while {what} ({failure.code}).",
        "Nothing was stored. Start again; if it keeps failing, contact the operator.",
    )


def invalid_identity(reason: str) -> SignInRefused:
    return SignInRefused(
        400,
        "We could not verify your sign-in",
        f"The sign-in answer failed verification: {reason}.",
        "Start again.",
    )


@sensitive_variables("params", "outcome")
def flow_redeem(
    *, application: Application, flow: dict[str, Any], params: dict[str, str], scopes: list[str]
) -> IssuedTokens:
    """Check the answer belongs to the flow of this browser session, then let MSAL redeem its code."""
    if not flow or not params.get("state") or params.get("state") != flow.get("state"):
        raise SignInRefused(
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
        raise failure_page(outcome, "redeeming the authorization code")
    if not outcome.id_token:
        raise invalid_identity("the identity provider returned no ID token")
    return outcome


def identity_verify(
    *, application: Application, flow: dict[str, Any], issued: IssuedTokens
) -> VerifiedIdentity:
    """The panel's own ID token verification (MSAL checks only the nonce)."""
    try:
        return id_token_verify(
            id_token=issued.id_token or "",
            authority_host=application.authority_host,
            client_id=application.client_id,
            raw_nonce=str(flow.get("nonce", "")),
            expected_tenant=flow.get("expected_tenant"),
        )
    except SigningKeysUnavailable as error:
        if not error.transient:
            raise invalid_identity(str(error)) from error
        raise failure_page(
            Failure(FailureClass.TRANSIENT, "JWKS", "keys unavailable"), "reading signing keys"
        ) from error
    except IdTokenInvalid as error:
        raise invalid_identity(str(error)) from error


def _mfa_refused() -> SignInRefused:
    # Microsoft's answer does not say whether the user has a method (Entra issues a token without
    # `mfa` to a user without one when the tenant does not require MFA): the advice covers both.
    return SignInRefused(
        403,
        "Multi-factor authentication is required",
        "The Secure Application Model requires MFA for every sign-in, and Microsoft reports that this "
        "sign-in did not use it.",
        "If your account has an MFA method, start again and approve the second step when Microsoft asks. "
        f"If Microsoft never asks you for one, your account has no method yet: register one at {MFA_SETUP_URL} "
        "(Security info, Add sign-in method), then start again.",
        help_url=MFA_SETUP_URL,
        help_label="Register a method in Security info",
    )


def mfa_require(*, identity: VerifiedIdentity, partner_center_token: str) -> None:
    """The MFA claim of the v1.0 Partner Center token this sign-in obtained, for this user and tenant.
    Partner Center's acceptance of it is checked by `agent_role_require`."""
    evidence = token_evidence_read(access_token=partner_center_token)
    if evidence is None:
        raise invalid_identity("the identity provider did not return a Partner Center access token")
    if (evidence.tenant_id.lower(), evidence.object_id.lower()) != (
        identity.tenant_id.lower(),
        identity.object_id.lower(),
    ):
        raise invalid_identity("the Partner Center access token belongs to another user")
    if not evidence.mfa:
        raise _mfa_refused()


def agent_role_require(*, identity: VerifiedIdentity, partner_center_token: str) -> AgentRole:
    """The user's agent role, by Partner Center's own answer; one real call, so Partner Center also
    confirms it accepts the token's MFA (401 with code 900421 otherwise)."""
    try:
        role = agent_role_get(access_token=partner_center_token, object_id=identity.object_id)
    except PartnerCenterRefused as error:
        if error.mfa_required:
            raise _mfa_refused() from error
        raise SignInRefused(
            403 if error.status in (401, 403) else 502,
            "Partner Center refused your account",
            f"Partner Center did not accept this sign-in ({error.status}, code {error.code or 'none'}).",
            "Nothing was stored. Check that your account is an agent of your partner organization in Partner "
            "Center, then start again.",
        ) from error
    except PartnerCenterMalformed as error:
        raise SignInRefused(
            502,
            "Partner Center gave an unreadable answer",
            "Partner Center's answer about your roles could not be read.",
            "Nothing was stored. Try again; if it keeps failing, contact the operator.",
        ) from error
    if role is None:
        raise SignInRefused(
            403,
            "Your account is not a partner agent",
            "Partner Center does not list your account as an admin agent or sales agent of your partner "
            "organization.",
            "Ask your Partner Center global administrator to give you the Admin agent role, then start again.",
        )
    return role


def evidence_require(*, identity: VerifiedIdentity, partner_center_token: str) -> AgentRole:
    mfa_require(identity=identity, partner_center_token=partner_center_token)
    return agent_role_require(identity=identity, partner_center_token=partner_center_token)
