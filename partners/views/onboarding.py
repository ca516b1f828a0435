"""Onboarding pages: explain, start the consent, receive the answer. Thin: the work is in
partners.onboarding."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from partners.onboarding import ConsentFailed, consent_flow_finish, consent_flow_start, consent_scopes
from tokens.broker import NoGrant, application_default
from tokens.identity import IdentityProviderHttpError, NoUsableCredential

log = logging.getLogger(__name__)
FLOW_SESSION_KEY = "consent_flow"


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _failure(request: HttpRequest, failure: ConsentFailed) -> HttpResponse:
    log.info("consent failed", extra={"status": failure.status, "reason": failure.title})
    return render(request, "partners/onboarding_failed.html", {"failure": failure}, status=failure.status)


def callback_params(request: HttpRequest) -> dict[str, str]:
    """The provider's answer as single values; a repeated parameter is a tampered answer."""
    if any(len(values) > 1 for _, values in request.GET.lists()):
        raise ConsentFailed(
            400,
            "The sign-in answer is malformed",
            "A parameter appears more than once in the answer.",
            "Start again.",
        )
    return {key: request.GET.get(key, "") for key in request.GET}


def _unavailable(request: HttpRequest) -> HttpResponse:
    return _failure(
        request,
        ConsentFailed(
            503,
            "Microsoft Entra ID is unavailable",
            "The sign-in could not be started because the identity provider did not answer.",
            "Nothing was stored. Try again in a few minutes.",
        ),
    )


@require_GET
def onboarding(request: HttpRequest) -> HttpResponse:
    try:
        application = application_default()
    except NoGrant:
        return _failure(
            request,
            ConsentFailed(
                503,
                "Onboarding is not configured",
                "No application is configured yet.",
                "Contact the operator.",
            ),
        )
    return render(
        request,
        "partners/onboarding.html",
        {
            "application": application,
            "scopes": consent_scopes(application),
            "audiences": application.audiences,
        },
    )


@require_POST
def onboarding_connect(request: HttpRequest) -> HttpResponse:
    return consent_redirect(request, expected_tenant=None)


def consent_redirect(request: HttpRequest, *, expected_tenant: str | None) -> HttpResponse:
    """Start a consent (first time, or a renewal bound to one tenant) and send the browser away."""
    try:
        flow = consent_flow_start(application=application_default(), expected_tenant=expected_tenant)
    except (IdentityProviderHttpError, NoUsableCredential, OSError, ValueError):
        return _unavailable(request)
    request.session[FLOW_SESSION_KEY] = flow
    return redirect(flow["auth_uri"])


@never_cache
@require_GET
def onboarding_callback(request: HttpRequest) -> HttpResponse:
    # Single use: the flow leaves the session whatever happens next, so a replayed answer fails.
    flow = request.session.pop(FLOW_SESSION_KEY, None)
    try:
        grant = consent_flow_finish(
            application=application_default(),
            flow=flow,
            params=callback_params(request),
            actor_ip=client_ip(request),
        )
    except ConsentFailed as failure:
        return _failure(request, failure)
    except (IdentityProviderHttpError, NoUsableCredential, OSError):
        return _unavailable(request)
    return render(request, "partners/onboarding_done.html", {"grant": grant}, status=200)
