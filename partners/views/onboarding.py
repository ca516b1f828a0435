"""Onboarding pages: explain, start the consent, receive the answer, confirm a replacement, and the
administrator's tenant-wide consent. Thin: the work is in partners.onboarding and partners.admin_consent."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from partners.admin_consent import admin_consent_finish, admin_consent_start
from partners.authflow import SignInRefused, callback_params
from partners.onboarding import (
    CONNECT_PURPOSE,
    consent_flow_start,
    consent_flow_verify,
    consent_pending_discard,
    consent_pending_put,
    consent_pending_take,
    consent_record,
    consent_scopes,
)
from tokens.issuance.broker import NoGrant, application_default
from tokens.issuance.identity import IdentityProviderHttpError, NoUsableCredential
from tokens.models import ConsentGrant

log = logging.getLogger(__name__)
FLOW_SESSION_KEY = "consent_flow"
PENDING_SESSION_KEY = "consent_pending"
DONE_SESSION_KEY = "consent_done_grant"
ADMIN_CONSENT_SESSION_KEY = "admin_consent_state"
# Everything the identity provider, Partner Center or Graph can raise that means "not now".
UNAVAILABLE = (IdentityProviderHttpError, NoUsableCredential, OSError)


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _failure(request: HttpRequest, failure: SignInRefused) -> HttpResponse:
    log.info("consent failed", extra={"status": failure.status, "reason": failure.title})
    return render(request, "partners/onboarding_failed.html", {"failure": failure}, status=failure.status)


def _unavailable(request: HttpRequest) -> HttpResponse:
    return _failure(
        request,
        SignInRefused(
            503,
            "Microsoft is unavailable",
            "Microsoft Entra ID or Partner Center did not answer in time.",
            "Nothing was stored. Try again in a few minutes.",
        ),
    )


def _not_configured(request: HttpRequest) -> HttpResponse:
    return _failure(
        request,
        SignInRefused(
            503, "Onboarding is not configured", "No application is configured yet.", "Contact the operator."
        ),
    )


@require_GET
def onboarding(request: HttpRequest) -> HttpResponse:
    try:
        application = application_default()
        consent_scopes(application)
    except NoGrant:
        return _not_configured(request)
    except SignInRefused as failure:
        return _failure(request, failure)
    return render(
        request, "partners/onboarding.html", {"application": application, "audiences": application.audiences}
    )


@require_POST
def onboarding_connect(request: HttpRequest) -> HttpResponse:
    return consent_redirect(request, expected_tenant=None, purpose=CONNECT_PURPOSE)


def consent_redirect(request: HttpRequest, *, expected_tenant: str | None, purpose: str) -> HttpResponse:
    """Start a consent (first time, or a renewal bound to one tenant) and send the browser away."""
    try:
        flow = consent_flow_start(
            application=application_default(), expected_tenant=expected_tenant, purpose=purpose
        )
    except NoGrant:
        return _not_configured(request)
    except SignInRefused as failure:
        return _failure(request, failure)
    except (*UNAVAILABLE, ValueError):
        return _unavailable(request)
    request.session[FLOW_SESSION_KEY] = flow
    return redirect(flow["auth_uri"])


def _connected(request: HttpRequest, grant: ConsentGrant) -> HttpResponse:
    """Post/redirect/get: the answer's one-time code leaves the address bar, so a reload is harmless."""
    request.session[DONE_SESSION_KEY] = str(grant.pk)
    return redirect("partners:onboarding-done")


@never_cache
@require_GET
@sensitive_variables("verified")
def onboarding_callback(request: HttpRequest) -> HttpResponse:
    # Single use: the flow leaves the session whatever happens next, so a replayed answer fails.
    flow = request.session.pop(FLOW_SESSION_KEY, None)
    try:
        application = application_default()
        verified = consent_flow_verify(
            application=application, flow=flow, params=callback_params(request.GET)
        )
        if verified.replaces is None:
            return _connected(
                request,
                consent_record(application=application, consent=verified.record, actor_ip=client_ip(request)),
            )
    except SignInRefused as failure:
        return _failure(request, failure)
    except NoGrant:
        return _not_configured(request)
    except UNAVAILABLE:
        return _unavailable(request)
    request.session[PENDING_SESSION_KEY] = consent_pending_put(consent=verified.record)
    return render(
        request,
        "partners/onboarding_confirm.html",
        {"record": verified.record, "existing": verified.replaces},
    )


@never_cache
@require_POST
@sensitive_variables("consent")
def onboarding_confirm(request: HttpRequest) -> HttpResponse:
    pending_id = str(request.session.pop(PENDING_SESSION_KEY, ""))
    if request.POST.get("decision") != "replace":
        consent_pending_discard(pending_id=pending_id)
        return redirect("partners:onboarding")
    try:
        consent = consent_pending_take(pending_id=pending_id)
        grant = consent_record(
            application=application_default(), consent=consent, actor_ip=client_ip(request)
        )
    except SignInRefused as failure:
        return _failure(request, failure)
    except NoGrant:
        return _not_configured(request)
    return _connected(request, grant)


@never_cache
@require_GET
def onboarding_done(request: HttpRequest) -> HttpResponse:
    grant_id = request.session.get(DONE_SESSION_KEY)
    grant = ConsentGrant.objects.select_related("partner").filter(pk=grant_id).first() if grant_id else None
    if grant is None:
        return redirect("partners:onboarding")
    return render(request, "partners/onboarding_done.html", {"grant": grant})


@require_POST
def admin_consent(request: HttpRequest) -> HttpResponse:
    try:
        state, url = admin_consent_start(application=application_default())
    except NoGrant:
        return _not_configured(request)
    except SignInRefused as failure:
        return _failure(request, failure)
    request.session[ADMIN_CONSENT_SESSION_KEY] = state
    return redirect(url)


@never_cache
@require_GET
def admin_consent_callback(request: HttpRequest) -> HttpResponse:
    state = str(request.session.pop(ADMIN_CONSENT_SESSION_KEY, ""))
    try:
        admin_consent_finish(expected_state=state, params=callback_params(request.GET))
    except SignInRefused as failure:
        return _failure(request, failure)
    return render(request, "partners/admin_consent_done.html")
