"""Partner dashboard: sign-in, grants overview, activity, renew and revoke. Thin: access goes
through partners.access.partner_access_get, work through services."""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlpanel.middleware import session_restart
from partners.access import SESSION_KEY, PartnerAccess, SignInRequired, partner_access_get
from partners.activity import (
    ActivityFilterError,
    ActivityFilters,
    activity_csv_lines,
    activity_events,
    activity_filters_parse,
)
from partners.authflow import SignInRefused, callback_params
from partners.onboarding import RENEW_PURPOSE
from partners.signin import signin_flow_finish, signin_flow_start
from partners.views.onboarding import UNAVAILABLE, client_ip, consent_redirect
from tokens.audit import Actor
from tokens.audit_pages import audit_newer_count, audit_page_get, cursor_decode
from tokens.issuance.broker import NoGrant, application_default
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent, ConsentGrant, NotificationContact
from tokens.renewal.contacts import ContactRefused, notification_contact_add, notification_contact_remove

log = logging.getLogger(__name__)
SIGNIN_FLOW_SESSION_KEY = "dashboard_signin_flow"
SIGNIN_FAILURE_SESSION_KEY = "dashboard_signin_failure"
# The dashboard page a signed-out visitor asked for (e.g. the renew link of an e-mail): the
# sign-in brings them back to it. Set only from our own resolved URL, never from a parameter.
NEXT_SESSION_KEY = "dashboard_next"
ACTIVITY_PAGE_SIZE = 25

View = Callable[..., HttpResponseBase]


def _signed_in(view: View) -> View:
    """Anonymous visitors go to the sign-in page, which brings them back to the page they asked
    for (GET only); 404 and 403 from the access helper stand."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except SignInRequired:
            if request.method == "GET":
                request.session[NEXT_SESSION_KEY] = request.path
            return redirect("partners:dashboard-signin")

    return never_cache(wrapped)


def _signin_failed(request: HttpRequest, failure: SignInRefused) -> HttpResponse:
    log.info("dashboard sign-in failed", extra={"status": failure.status, "reason": failure.title})
    return render(
        request, "partners/dashboard/signin_failed.html", {"failure": failure}, status=failure.status
    )


def _signin_refused(request: HttpRequest, failure: SignInRefused) -> HttpResponse:
    """Post/redirect/get for a failed answer: the code and state leave the address bar, and a
    reload of /dashboard/signin/failed/ shows the same page."""
    log.info("dashboard sign-in failed", extra={"status": failure.status, "reason": failure.title})
    request.session[SIGNIN_FAILURE_SESSION_KEY] = dataclasses.asdict(failure)
    return redirect("partners:dashboard-signin-failed")


@never_cache
@require_GET
def signin_failed(request: HttpRequest) -> HttpResponse:
    stored = request.session.get(SIGNIN_FAILURE_SESSION_KEY)
    if not isinstance(stored, dict):
        return redirect("partners:dashboard-signin")
    return render(
        request,
        "partners/dashboard/signin_failed.html",
        {"failure": stored},
        status=int(stored.get("status", 400)),
    )


def _unavailable() -> SignInRefused:
    return SignInRefused(
        503,
        "Microsoft Entra ID is unavailable",
        "The sign-in could not be started or completed because the identity provider did not answer.",
        "Try again in a few minutes.",
    )


@never_cache
@require_GET
def signin(request: HttpRequest) -> HttpResponse:
    if request.session.get(SESSION_KEY):
        return redirect("partners:dashboard")
    return render(request, "partners/dashboard/signin.html")


@require_POST
def signin_start(request: HttpRequest) -> HttpResponse:
    try:
        flow = signin_flow_start(application=application_default())
    except NoGrant:
        return _signin_failed(
            request, SignInRefused(503, "Sign-in is not configured", "No application is configured.", "")
        )
    except SignInRefused as failure:
        return _signin_failed(request, failure)
    except (*UNAVAILABLE, ValueError):
        return _signin_failed(request, _unavailable())
    request.session[SIGNIN_FLOW_SESSION_KEY] = flow
    return redirect(flow["auth_uri"])


@never_cache
@require_GET
def signin_callback(request: HttpRequest) -> HttpResponse:
    # Single use: the flow leaves the session whatever happens next, so a replayed answer fails.
    flow = request.session.pop(SIGNIN_FLOW_SESSION_KEY, None)
    try:
        member = signin_flow_finish(
            application=application_default(), flow=flow, params=callback_params(request.GET)
        )
    except SignInRefused as failure:
        return _signin_refused(request, failure)
    except (*UNAVAILABLE, NoGrant):
        return _signin_refused(request, _unavailable())
    request.session.pop(SIGNIN_FAILURE_SESSION_KEY, None)
    session_restart(request)
    request.session[SESSION_KEY] = member.pk
    target = request.session.pop(NEXT_SESSION_KEY, None)
    if (
        isinstance(target, str)
        and target.startswith("/dashboard/")
        and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    ):
        return redirect(target)
    return redirect("partners:dashboard")


@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return render(request, "partners/dashboard/signed_out.html")


STATE_ADVICE = {
    ConsentGrant.State.ACTIVE: "Working. Nothing to do: access tokens are refreshed automatically.",
    ConsentGrant.State.EXPIRING: (
        "Working, but the time-bound consent lapses soon. An admin agent should renew it before the "
        "policy expiry date."
    ),
    ConsentGrant.State.NEEDS_ATTENTION: (
        "Working, but Microsoft Entra ID answered an unexpected error the last time the panel renewed "
        "it. The operator has been alerted and the panel keeps trying; nothing to do for now."
    ),
    ConsentGrant.State.NEEDS_RENEWAL: (
        "Not working: Microsoft Entra ID no longer accepts this consent (for example after a password "
        "reset, a new MFA or conditional-access rule, or removed consent). An admin agent must renew it."
    ),
    ConsentGrant.State.REVOKED: (
        "Revoked: the panel holds no token for it. To use the application again, an admin agent must "
        "renew (consent again)."
    ),
    ConsentGrant.State.EXPIRED: "The time-bound consent lapsed. An admin agent must renew it.",
}


@_signed_in
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    access = partner_access_get(request, write=False)
    grants = list(
        ConsentGrant.objects.filter(partner=access.partner)
        .select_related("application")
        .order_by("application__name", "created_at")
    )
    rows = [(grant, STATE_ADVICE[ConsentGrant.State(grant.state)]) for grant in grants]
    return render(
        request,
        "partners/dashboard/overview.html",
        {"access": access, "rows": rows, "renewable_application_id": _renewable_application_id()},
    )


def _renewable_application_id() -> object:
    """The consent flow (onboarding, and so renewal) serves the deployment's default application."""
    try:
        return application_default().pk
    except NoGrant:
        return None


def _activity_page(
    request: HttpRequest, access: PartnerAccess, filters: ActivityFilters | None, error: str = ""
) -> HttpResponse:
    """The activity page; with `error` (a filter that cannot be applied) the form and the message
    only, with status 400."""
    context: dict[str, object] = {
        "access": access,
        "actions": AuditEvent.Action.choices,
        "outcomes": AuditEvent.Outcome.choices,
        "error": error,
        # As typed (escaped by the template), so that the visitor sees what was refused.
        "values": {key: request.GET.get(key, "")[:40] for key in ("action", "outcome", "since", "until")},
    }
    if filters is None:
        return render(request, "partners/dashboard/activity.html", context, status=400)
    events = activity_events(partner=access.partner, filters=filters)
    # Paged by key (tokens/audit_pages.py): a deep page costs what the first one does.
    page = audit_page_get(
        events=events.select_related("application"),
        size=ACTIVITY_PAGE_SIZE,
        before=cursor_decode(request.GET.get("before")),
        after=cursor_decode(request.GET.get("after")),
    )
    # Counts read the partner's index only (it includes the outcome): no table page is visited.
    count = events.count()
    context.update(
        {
            "page": page,
            "count": count,
            "page_number": audit_newer_count(events=events, page=page) // ACTIVITY_PAGE_SIZE + 1,
            "num_pages": max(1, math.ceil(count / ACTIVITY_PAGE_SIZE)),
            "filter_query": urlencode(filters.query()),
        }
    )
    return render(request, "partners/dashboard/activity.html", context)


@_signed_in
@require_GET
def activity(request: HttpRequest) -> HttpResponse:
    access = partner_access_get(request, write=False)
    try:
        filters = activity_filters_parse(request.GET)
    except ActivityFilterError as error:
        return _activity_page(request, access, None, str(error))
    return _activity_page(request, access, filters)


@_signed_in
@require_GET
def activity_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered activity as CSV, streamed page by page (partners.activity.activity_csv_lines)."""
    access = partner_access_get(request, write=False)
    try:
        filters = activity_filters_parse(request.GET)
    except ActivityFilterError as error:
        return _activity_page(request, access, None, str(error))
    response = StreamingHttpResponse(
        activity_csv_lines(
            partner=access.partner, events=activity_events(partner=access.partner, filters=filters)
        ),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="activity-{access.partner.tenant_id}.csv"'
    return response


@_signed_in
@require_http_methods(["GET", "POST"])
def grant_renew(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    """GET: the page the renewal e-mail links to ("Renew <application> for <partner>"), with the
    Renew button for admin agents. POST: consent again."""
    access = partner_access_get(request, write=request.method == "POST", grant_id=grant_id)
    assert access.grant is not None
    if request.method == "GET":
        return render(
            request,
            "partners/dashboard/renew.html",
            {
                "access": access,
                "advice": STATE_ADVICE[ConsentGrant.State(access.grant.state)],
                "renewable": access.grant.application_id == _renewable_application_id(),
            },
        )
    if access.grant.application_id != _renewable_application_id():
        failure = SignInRefused(
            409,
            "This grant cannot be renewed here",
            f"Renewal through this dashboard is available for the panel's own application only, "
            f"not for {access.grant.application.name}.",
            "Contact the operator to renew it.",
        )
        return render(
            request,
            "partners/dashboard/signin_failed.html",
            {"failure": failure, "access": access},
            status=failure.status,
        )
    # Consent again, bound to this partner's tenant: the callback renews the grant (new refresh
    # token, policy expiry reset, generation + 1 so cached access tokens stop being served).
    return consent_redirect(request, expected_tenant=str(access.partner.tenant_id), purpose=RENEW_PURPOSE)


@_signed_in
@require_http_methods(["GET", "POST"])
def grant_revoke_confirm(request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
    access = partner_access_get(request, write=True, grant_id=grant_id)
    assert access.grant is not None
    if request.method == "GET":
        return render(request, "partners/dashboard/revoke_confirm.html", {"access": access})
    actor = Actor(type=AuditEvent.ActorType.PARTNER_USER, id=access.member.upn, client_ip=client_ip(request))
    grant = grant_revoke(grant=access.grant, actor=actor, reason="revoked by the partner in the dashboard")
    return render(
        request,
        "partners/dashboard/revoked.html",
        {"access": access, "grant": grant, "dashboard_url": reverse("partners:dashboard")},
    )


@_signed_in
@require_http_methods(["GET", "POST"])
def contacts(request: HttpRequest) -> HttpResponse:
    """Who receives the grant e-mails. Everyone of the partner may look; admin agents edit."""
    access = partner_access_get(request, write=request.method == "POST")
    error = ""
    status = 200
    if request.method == "POST":
        actor = Actor(
            type=AuditEvent.ActorType.PARTNER_USER, id=access.member.upn, client_ip=client_ip(request)
        )
        try:
            if "remove" in request.POST:
                try:
                    contact_id = int(request.POST["remove"])
                except ValueError:
                    contact_id = 0
                if not notification_contact_remove(
                    partner=access.partner, contact_id=contact_id, actor=actor
                ):
                    raise ContactRefused("No such contact.")
            else:
                notification_contact_add(
                    partner=access.partner, email=request.POST.get("email", ""), actor=actor
                )
            return redirect("partners:dashboard-contacts")
        except ContactRefused as refused:
            error, status = str(refused), 400
    return render(
        request,
        "partners/dashboard/contacts.html",
        {
            "access": access,
            "contacts": NotificationContact.objects.filter(partner=access.partner),
            "error": error,
            "email": request.POST.get("email", "") if error else "",
        },
        status=status,
    )
