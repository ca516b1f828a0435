"""Onboarding pages: explain, start the consent, receive the answer, confirm a replacement, and the
administrator's tenant-wide consent. Thin: the work is in partners.onboarding and partners.admin_consent.

Every callback answers with a redirect (post/redirect/get), whatever the outcome: the answer's
one-time code and state leave the address bar, and a reload shows the same page again instead of
"this sign-in link has expired". A renewal started in the dashboard (the flow's purpose, kept in the
server-side session, never taken from the browser) ends in the dashboard with a "Renewed" message."""

from __future__ import annotations

import dataclasses
import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from partners.admin_consent import admin_consent_finish, admin_consent_start
from partners.authflow import SignInRefused, callback_params
from partners.onboarding import (
    CONNECT_PURPOSE,
    RENEW_PURPOSE,
    consent_allowed_check,
    consent_flow_start,
    consent_flow_verify,
    consent_pending_discard,
    consent_pending_peek,
    consent_pending_put,
    consent_pending_take,
    consent_record,
    consent_scopes,
)
from partners.templatetags.partner_pages import relative
from tokens.issuance.broker import NoGrant, application_default
from tokens.issuance.identity import IdentityProviderHttpError, NoUsableCredential
from tokens.models import ConsentGrant

log = logging.getLogger(__name__)
FLOW_SESSION_KEY = "consent_flow"
PENDING_SESSION_KEY = "consent_pending"
DONE_SESSION_KEY = "consent_done_grant"
FAILURE_SESSION_KEY = "consent_failure"
ADMIN_CONSENT_SESSION_KEY = "admin_consent_state"
ADMIN_CONSENT_DONE_SESSION_KEY = "admin_consent_done"
# Everything the identity provider, Partner Center or Graph can raise that means "not now".
UNAVAILABLE = (IdentityProviderHttpError, NoUsableCredential, OSError)


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _failure(request: HttpRequest, failure: SignInRefused) -> HttpResponse:
    log.info("consent failed", extra={"status": failure.status, "reason": failure.title})
    return render(request, "partners/onboarding_failed.html", {"failure": failure}, status=failure.status)


_UNAVAILABLE = SignInRefused(
    503,
    "Microsoft is unavailable",
    "Microsoft Entra ID or Partner Center did not answer in time.",
    "Nothing was stored. Try again in a few minutes.",
)
_NOT_CONFIGURED = SignInRefused(
    503, "Onboarding is not configured", "No application is configured yet.", "Contact the operator."
)


def _unavailable(request: HttpRequest) -> HttpResponse:
    return _failure(request, _UNAVAILABLE)


def _not_configured(request: HttpRequest) -> HttpResponse:
    return _failure(request, _NOT_CONFIGURED)


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
    request.session.pop(FAILURE_SESSION_KEY, None)
    return redirect(flow["auth_uri"])


def _renewing(flow: object) -> bool:
    """The flow is a renewal an admin agent started in the dashboard (partners.views.dashboard)."""
    return isinstance(flow, dict) and flow.get("purpose") == RENEW_PURPOSE


def _refused(request: HttpRequest, failure: SignInRefused, *, from_dashboard: bool) -> HttpResponse:
    """Post/redirect/get for a failed answer: the failure page is /onboarding/failed/."""
    log.info("consent failed", extra={"status": failure.status, "reason": failure.title})
    request.session[FAILURE_SESSION_KEY] = {**dataclasses.asdict(failure), "from_dashboard": from_dashboard}
    return redirect("partners:onboarding-failed")


def _connected(request: HttpRequest, grant: ConsentGrant, *, from_dashboard: bool) -> HttpResponse:
    """Post/redirect/get: the answer's one-time code leaves the address bar, so a reload is harmless.
    A renewal from the dashboard goes back there, to a fixed URL of ours, with a message."""
    if from_dashboard:
        expiry = grant.policy_expires_at
        messages.success(
            request,
            f"Renewed {grant.application.name} for {grant.partner.display_name}: the consent now lapses "
            f"{relative(expiry, timezone.now())} ({expiry:%Y-%m-%d}) unless renewed again.",
        )
        return redirect("partners:dashboard")
    request.session[DONE_SESSION_KEY] = str(grant.pk)
    return redirect("partners:onboarding-done")


@never_cache
@require_GET
@sensitive_variables("verified")
def onboarding_callback(request: HttpRequest) -> HttpResponse:
    # Single use: the flow leaves the session whatever happens next, so a replayed answer fails.
    flow = request.session.pop(FLOW_SESSION_KEY, None)
    from_dashboard = _renewing(flow)
    try:
        application = application_default()
        verified = consent_flow_verify(
            application=application, flow=flow, params=callback_params(request.GET)
        )
        if verified.replaces is None:
            grant = consent_record(
                application=application, consent=verified.record, actor_ip=client_ip(request)
            )
            return _connected(request, grant, from_dashboard=from_dashboard)
    except SignInRefused as failure:
        return _refused(request, failure, from_dashboard=from_dashboard)
    except NoGrant:
        return _refused(request, _NOT_CONFIGURED, from_dashboard=from_dashboard)
    except UNAVAILABLE:
        return _refused(request, _UNAVAILABLE, from_dashboard=from_dashboard)
    request.session[PENDING_SESSION_KEY] = consent_pending_put(consent=verified.record)
    return redirect("partners:onboarding-confirm")


@never_cache
@require_GET
def onboarding_failed(request: HttpRequest) -> HttpResponse:
    """The failure of the last answer, kept in the session so that a reload shows it again."""
    stored = request.session.get(FAILURE_SESSION_KEY)
    if not isinstance(stored, dict):
        return redirect("partners:onboarding")
    return render(
        request,
        "partners/onboarding_failed.html",
        {"failure": stored, "from_dashboard": bool(stored.get("from_dashboard"))},
        status=int(stored.get("status", 400)),
    )


@never_cache
@require_http_methods(["GET", "POST"])
@sensitive_variables("consent", "record")
def onboarding_confirm(request: HttpRequest) -> HttpResponse:
    """GET: "already connected by X on D: continuing replaces it". POST: the answer to it."""
    if request.method == "GET":
        try:
            application = application_default()
            record = consent_pending_peek(pending_id=str(request.session.get(PENDING_SESSION_KEY, "")))
            existing = consent_allowed_check(application=application, consent=record)
        except SignInRefused as failure:
            return _failure(request, failure)
        except NoGrant:
            return _not_configured(request)
        if existing is None:  # the grant went away meanwhile: nothing would be replaced
            return redirect("partners:onboarding")
        return render(request, "partners/onboarding_confirm.html", {"record": record, "existing": existing})
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
        return _refused(request, failure, from_dashboard=False)
    except NoGrant:
        return _refused(request, _NOT_CONFIGURED, from_dashboard=False)
    return _connected(request, grant, from_dashboard=False)


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
        return _refused(request, failure, from_dashboard=False)
    request.session[ADMIN_CONSENT_DONE_SESSION_KEY] = True
    return redirect("partners:onboarding-admin-consent-done")


@never_cache
@require_GET
def admin_consent_done(request: HttpRequest) -> HttpResponse:
    if not request.session.get(ADMIN_CONSENT_DONE_SESSION_KEY):
        return redirect("partners:onboarding")
    return render(request, "partners/admin_consent_done.html")
