"""Partner dashboard sign-in: the consent's authorization-code flow (partners.authflow), for Partner
Center only.

1. The authorization request asks for the Partner Center scope the partner already consented to
   (MSAL adds openid, profile and offline_access). Entra redeems a code for one resource, and Partner
   Center is the one that matters: its v1.0 access token carries the MFA evidence (`amr`), and its
   roles API says whether the user is an admin or sales agent. The token and the refresh token are
   used for those calls and dropped (MSAL's token cache discards them); nothing of them is stored.
2. The user's tenant must be a known partner (else: a page that offers onboarding).
3. Only then the partner user row is created or updated, with the role Partner Center gave.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from partners.authflow import (
    SignInRefused,
    agent_role_require,
    flow_redeem,
    flow_start,
    identity_verify,
    mfa_require,
    partner_center_scopes,
)
from partners.models import Partner, PartnerUser
from tokens.models import Application

SIGNIN_PURPOSE = "signin"


def signin_flow_start(*, application: Application) -> dict[str, Any]:
    return flow_start(
        application=application,
        scopes=partner_center_scopes(application),
        redirect_uri=settings.DASHBOARD_SIGNIN_REDIRECT_URI,
        purpose=SIGNIN_PURPOSE,
    )


def signin_flow_finish(
    *, application: Application, flow: dict[str, Any] | None, params: dict[str, str]
) -> PartnerUser:
    flow = flow or {}
    issued = flow_redeem(
        application=application, flow=flow, params=params, scopes=partner_center_scopes(application)
    )
    identity = identity_verify(application=application, flow=flow, issued=issued)
    mfa_require(identity=identity, partner_center_token=issued.access_token)
    partner = Partner.objects.filter(tenant_id=identity.tenant_id).first()
    if partner is None:
        raise SignInRefused(
            403,
            "Your organization is not connected yet",
            "You signed in from a tenant that has not connected to this control panel.",
            "An admin agent of your organization can connect it from the onboarding page.",
            offer_onboarding=True,
        )
    role = agent_role_require(identity=identity, partner_center_token=issued.access_token)
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
