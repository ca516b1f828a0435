"""Tenant-wide admin consent (Microsoft identity platform v2.0 `/adminconsent` endpoint).

Some permissions the Secure Application Model asks for (Graph's "Access the directory as the signed-in
user") need an administrator's consent for the whole tenant, and an admin agent is not necessarily a
directory administrator. When Entra answers the consent with "admin approval required", the panel
sends an administrator of the partner tenant here first. The answer names a tenant, but Microsoft
warns that it must not be trusted for authorization: the panel stores nothing from it. It only tells
the administrator that an admin agent can now connect, and that connection is verified in full.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from django.conf import settings

from partners.authflow import SignInRefused
from partners.onboarding import consent_scopes
from tokens.models import Application

# `common` is not accepted by the v2 endpoint; `organizations` lets any work account's admin answer.
ADMIN_CONSENT_TENANT = "organizations"


def admin_consent_start(*, application: Application) -> tuple[str, str]:
    """The state to keep in the session and the URL to send the administrator to."""
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "client_id": application.client_id,
            "scope": " ".join(consent_scopes(application)),
            "redirect_uri": settings.SAM_APP_ADMIN_CONSENT_REDIRECT_URI,
            "state": state,
        }
    )
    return state, f"{application.authority_host.rstrip('/')}/{ADMIN_CONSENT_TENANT}/v2.0/adminconsent?{query}"


def admin_consent_finish(*, expected_state: str, params: dict[str, str]) -> None:
    if not expected_state or params.get("state") != expected_state:
        raise SignInRefused(
            400,
            "This consent link has expired or was already used",
            "The answer from Microsoft Entra ID does not match an admin consent started in this browser.",
            "Start again from the onboarding page.",
        )
    if params.get("error"):
        cancelled = params["error"] in {"access_denied", "consent_required", "permission_denied"}
        raise SignInRefused(
            403,
            "Administrator consent was not given" if cancelled else "Administrator consent did not complete",
            f"Microsoft Entra ID answered with the error '{params['error'][:64]}'.",
            "Sign in with a Global Administrator or Privileged Role Administrator of your partner tenant and "
            "accept, then connect again as an admin agent.",
        )
    if params.get("admin_consent", "").lower() != "true":
        raise SignInRefused(
            400,
            "The administrator consent answer is malformed",
            "The answer carries neither a consent nor an error.",
            "Start again from the onboarding page.",
        )
