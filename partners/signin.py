"""Partner dashboard sign-in: OIDC through MSAL against the identity provider, with MFA.

1. The authorization request asks for `openid profile` (MSAL adds `offline_access` itself and
   refuses those names passed explicitly) plus the Microsoft Graph audience the partner already
   consented to. An ID token alone does not carry Partner Center agent roles (they are group
   memberships), and Entra redeems a code only for a resource: Graph is the one resource needed,
   to read `/me/memberOf` once. The Graph token and the refresh token that come back are used for
   that one call and dropped (MSAL's token cache discards them); nothing of them is stored.
2. Finishing shares the consent's checks: state bound to this browser session and used once,
   MSAL's PKCE and nonce, the panel's own ID token verification, `mfa` in `amr`.
3. The user's tenant must be a known partner (else: a page that offers onboarding) and the user an
   admin or sales agent. Only then the partner user row is created or updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from partners.models import Partner, PartnerUser
from partners.onboarding import ConsentFailed, agent_role_require, code_redeem, identity_verify_with_mfa
from tokens.identity import msal_app_get
from tokens.models import Application

GRAPH_AUDIENCE = "graph"


@dataclass
class SignInFailed(ConsentFailed):
    """A refused sign-in; `offer_onboarding` when the tenant has not connected yet."""

    offer_onboarding: bool = False


def _signin_scopes(application: Application) -> list[str]:
    return application.scopes_for(GRAPH_AUDIENCE)


def signin_flow_start(*, application: Application) -> dict[str, Any]:
    """Begin a sign-in; the flow goes into the server-side session. prompt=login for the same
    reason as the consent: a fresh sign-in with MFA, never a ride on another account's session."""
    app = msal_app_get(application=application, tenant=application.authority_tenant)
    flow: dict[str, Any] = app.initiate_auth_code_flow(
        _signin_scopes(application), redirect_uri=settings.DASHBOARD_SIGNIN_REDIRECT_URI, prompt="login"
    )
    flow["expected_tenant"] = None
    return flow


def signin_flow_finish(
    *, application: Application, flow: dict[str, Any] | None, params: dict[str, str]
) -> PartnerUser:
    issued = code_redeem(
        application=application, flow=flow or {}, params=params, scopes=_signin_scopes(application)
    )
    identity = identity_verify_with_mfa(application=application, flow=flow or {}, issued=issued)
    partner = Partner.objects.filter(tenant_id=identity.tenant_id).first()
    if partner is None:
        raise SignInFailed(
            403,
            "Your organization is not connected yet",
            "You signed in from a tenant that has not connected to this control panel.",
            "An admin agent of your organization can connect it from the onboarding page.",
            offer_onboarding=True,
        )
    role = agent_role_require(graph_token=issued.access_token)
    member, _ = PartnerUser.objects.update_or_create(
        partner=partner,
        object_id=identity.object_id,
        defaults={
            "upn": identity.upn[:254],
            "display_name": identity.name[:200],
            "role": role,
            "last_signed_in_at": timezone.now(),
        },
    )
    return member
