"""The partner pages as people read them (audiences in words, relative dates, coloured events), the
activity's date range and its streamed CSV export, the renewal that ends in the dashboard, callbacks
that end on clean URLs, and the advice for a user without an MFA method. Failure paths included:
bad dates and CSV parameters, forged renewal state."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gdap.models import Relationship
from partners import activity
from partners.models import AgentRole
from partners.templatetags.partner_pages import relative, when
from partners.views.onboarding import FLOW_SESSION_KEY
from sandbox import demo
from tests.fixtures.panel import consent_run
from tests.fixtures.staff import dashboard_login, grant_make, member_make, partner_make
from tests.partners.test_dashboard_signin import dashboard_sign_in
from tokens.audiences import audience_names
from tokens.issuance.failures import failure_from_error_response
from tokens.models import Application, AuditEvent, ConsentGrant

pytestmark = pytest.mark.django_db

CANARY = "canary-export-refresh-token-7d1e"


# --- words and dates ------------------------------------------------------------------------------


def test_audiences_read_in_words_in_one_order() -> None:
    assert audience_names(["graph", "arm", "partner_center"]) == [
        "Partner Center",
        "Microsoft Graph",
        "Azure Resource Manager",
    ]
    assert audience_names(["keyvault", "graph"]) == ["Microsoft Graph", "keyvault"]  # unnamed: as configured


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=12, hours=3), "in 12 days"),
        (-timedelta(hours=3, minutes=20), "3 hours ago"),
        (timedelta(seconds=20), "just now"),
        (-timedelta(minutes=1), "1 minute ago"),
        (timedelta(hours=47), "in 47 hours"),
        (-timedelta(days=200), "6 months ago"),
        (timedelta(days=800), "in 2 years"),
    ],
)
def test_relative_dates(delta: timedelta, text: str) -> None:
    now = datetime(2026, 4, 30, 12, 0, tzinfo=UTC)
    assert relative(now + delta, now) == text


def test_a_relative_date_keeps_the_exact_time_in_its_element() -> None:
    moment = timezone.now() + timedelta(days=12, minutes=5)
    html = when(moment, exact="date")
    assert f'datetime="{moment.astimezone(UTC).isoformat()}"' in html
    assert f'title="{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"' in html
    assert f'>in 12 days <span class="exact">({moment.astimezone(UTC):%Y-%m-%d})</span>' in html
    assert when(None) == "never"


# --- activity: date range, colours, CSV -------------------------------------------------------------


@pytest.fixture
def world(application: Application):
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    grant = grant_make(partner=contoso, application=application, refresh_token=CANARY)
    grant_make(partner=fabrikam, application=application, refresh_token=CANARY + "-f")
    old = timezone.now() - timedelta(days=10)
    events = [
        AuditEvent(
            actor_type="service", actor_id="orders", action="token_issued", partner=contoso, grant=grant,
            application=application, audience="graph", purpose="list subscriptions",
            customer_tenant_id=demo.ADATUM,
        ),
        AuditEvent(
            actor_type="service", actor_id="orders", action="token_denied", outcome="denied", partner=contoso,
            application=application, audience="arm", purpose="=HYPERLINK(\"http://evil.example\")",
            error_code="grant_revoked",
        ),
        AuditEvent(actor_type="staff", actor_id="17", action="revoked", partner=contoso, detail="+1 staff"),
        AuditEvent(actor_type="system", action="refreshed", partner=contoso, at=old, detail="-2@renewal"),
        AuditEvent(actor_type="service", actor_id="orders", action="token_issued", partner=fabrikam,
                   application=application, audience="graph", purpose="fabrikam-purpose-9c4"),
    ]  # fmt: skip
    AuditEvent.objects.bulk_create(events)
    people = {
        "alice": member_make(
            partner=contoso, upn="alice@contoso", role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
        ),
        "bob": member_make(
            partner=contoso, upn="bob@contoso", role=AgentRole.SALES_AGENT, object_id=demo.ADATUM
        ),
        "charlie": member_make(
            partner=fabrikam, upn="charlie@fabrikam", role=AgentRole.ADMIN_AGENT, object_id=demo.FABRIKAM
        ),
    }
    return {"grant": grant, "people": people, "old_day": old.date()}


def _as(world, who: str) -> Client:
    return dashboard_login(Client(), world["people"][who])


def _csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse) and response.streaming
    # A WSGI response streams synchronously: its content is a plain iterator of bytes.
    content = b"".join(cast(Iterator[bytes], response.streaming_content))
    return list(csv.reader(io.StringIO(content.decode())))


def test_the_activity_page_colours_each_event_and_names_its_audience(world) -> None:
    body = _as(world, "bob").get("/dashboard/activity/").content.decode()
    assert '<span class="tone tone-good">Access token issued</span>' in body
    assert '<span class="tone tone-bad">Access token refused</span>' in body
    assert '<span class="tone tone-notable">Revoked</span>' in body
    assert "Denied (grant_revoked)" in body  # the outcome in words next to the colour
    assert "Microsoft Graph" in body and "Azure Resource Manager" in body
    assert f"customer {demo.ADATUM}" in body
    assert "Staff user" in body and "Staff user: 17" not in body
    assert "fabrikam-purpose-9c4" not in body and CANARY not in body
    assert "ago" in body and "<time datetime=" in body


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "2026-13-40"}, "“From” (2026-13-40) is not a day of the calendar."),
        ({"until": "yesterday"}, "“To” must be a date written YYYY-MM-DD"),
        ({"since": "20260101"}, "“From” must be a date"),
        ({"until": "9999-12-31"}, "“To” must be a day between 1970 and 9998"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "is after “To” (2026-05-01)"),
        ({"action": "<script>"}, "There is no such event type."),
        ({"outcome": "maybe"}, "There is no such outcome."),
    ],
)
def test_bad_filters_are_explained_and_show_nothing(world, query, message) -> None:
    client = _as(world, "bob")
    for url in ("/dashboard/activity/", "/dashboard/activity/export.csv"):
        response = client.get(url, query)
        body = response.content.decode()
        assert response.status_code == 400 and response["Content-Type"].startswith("text/html")
        assert message in body and 'role="alert"' in body
        assert "list subscriptions" not in body and "<script>" not in body


def test_the_date_range_selects_utc_days(world) -> None:
    client = _as(world, "bob")
    today = timezone.now().date()
    old_day = world["old_day"].isoformat()
    assert "3 events" in client.get("/dashboard/activity/", {"since": today.isoformat()}).content.decode()
    ranged = client.get("/dashboard/activity/", {"since": old_day, "until": old_day}).content.decode()
    assert "1 event." in ranged and "-2@renewal" in ranged
    # The export link carries the same filters.
    assert f"/dashboard/activity/export.csv?since={old_day}&amp;until={old_day}" in ranged


def test_the_csv_export_is_the_filtered_scoped_activity_and_neutralises_formulas(world) -> None:
    now = timezone.now()
    Relationship.objects.create(
        partner=world["grant"].partner, relationship_id="adatum-1", display_name="Adatum managed",
        customer_tenant_id=demo.ADATUM, customer_name="Adatum Corporation", status="active",
        first_seen_at=now, last_seen_at=now,
    )  # fmt: skip
    rows = _csv(_as(world, "bob").get("/dashboard/activity/export.csv"))
    assert rows[0] == list(activity.CSV_HEADER)
    assert len(rows) == 5  # Contoso's four events, newest first; none of Fabrikam's
    issued = next(row for row in rows if row[1] == "Access token issued")
    assert issued[4:9] == [
        "Service client: orders",
        "SAM Control Panel (demo)",
        "Microsoft Graph",
        "Adatum Corporation",  # from Contoso's GDAP inventory
        demo.ADATUM,
    ]
    assert issued[9] == "list subscriptions"
    denied = next(row for row in rows if row[1] == "Access token refused")
    assert denied[2:4] == ["Denied", "grant_revoked"]
    assert denied[9] == '\'=HYPERLINK("http://evil.example")'  # a spreadsheet shows it as text
    revoked = next(row for row in rows if row[1] == "Revoked")
    assert revoked[4] == "Staff user" and revoked[10] == "'+1 staff"
    assert rows[-1][1] == "Refresh token redeemed" and rows[-1][10] == "'-2@renewal"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    text = "\n".join(",".join(row) for row in rows)
    assert CANARY not in text and "fabrikam" not in text.lower()
    filtered = _csv(_as(world, "bob").get("/dashboard/activity/export.csv", {"action": "token_issued"}))
    assert [row[1] for row in filtered[1:]] == ["Access token issued"]
    # Another partner's admin agent exports his own partner's events only.
    theirs = _csv(_as(world, "charlie").get("/dashboard/activity/export.csv"))
    assert [row[9] for row in theirs[1:]] == ["fabrikam-purpose-9c4"]


def test_the_csv_export_needs_a_sign_in_and_is_never_cached(world) -> None:
    anonymous = Client().get("/dashboard/activity/export.csv")
    assert anonymous.status_code == 302 and anonymous.headers["Location"] == "/dashboard/signin/"
    response = _as(world, "bob").get("/dashboard/activity/export.csv")
    assert response["Content-Disposition"] == f'attachment; filename="activity-{demo.CONTOSO}.csv"'
    assert "no-store" in response["Cache-Control"]


def test_the_csv_export_streams_page_by_page_with_bounded_queries(world, monkeypatch) -> None:
    contoso = world["grant"].partner
    AuditEvent.objects.bulk_create(
        AuditEvent(actor_type="system", action="refreshed", partner=contoso, detail=f"bulk {i}")
        for i in range(41)
    )
    monkeypatch.setattr(activity, "CSV_PAGE_SIZE", 10)
    response = _as(world, "bob").get("/dashboard/activity/export.csv")
    assert isinstance(response, StreamingHttpResponse)
    chunks = iter(cast(Iterator[bytes], response.streaming_content))
    with CaptureQueriesContext(connection) as first:
        header = next(chunks)
    assert header.startswith(b"time (UTC),event") and len(first) == 0  # nothing read yet
    with CaptureQueriesContext(connection) as read:
        pages = list(chunks)
    # 45 events in pages of 10: five pages, one query each, each asking for at most 11 rows by key;
    # the customers' names are read once, before the first page.
    assert len(pages) == 5 and sum(chunk.count(b"\n") for chunk in pages) == 45
    audit_queries = [q["sql"] for q in read.captured_queries if "tokens_auditevent" in q["sql"]]
    assert len(audit_queries) == 5 and len(read.captured_queries) == 6
    assert "gdap_relationship" in read.captured_queries[0]["sql"]
    assert all("LIMIT 11" in sql and "OFFSET" not in sql for sql in audit_queries)


# --- renewing from the dashboard --------------------------------------------------------------------


def _alice(grant: ConsentGrant) -> Client:
    alice = member_make(
        partner=grant.partner, upn=demo.ADMIN_AGENT, role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
    )
    return dashboard_login(Client(), alice)


def _renew_answer(client: Client, grant: ConsentGrant, sandbox) -> dict[str, str]:
    start = client.post(reverse("partners:dashboard-grant-renew", args=[grant.pk]))
    assert start.status_code == 302
    return sandbox.sign_in(start.headers["Location"], demo.ADMIN_AGENT)


def test_renewing_ends_in_the_dashboard_whatever_the_answer_says_about_where_to_go(
    consented_grant, panel_settings
) -> None:
    client = _alice(consented_grant)
    answer = _renew_answer(client, consented_grant, panel_settings)
    assert client.session[FLOW_SESSION_KEY]["purpose"] == "renew"  # server-side, never in the URL
    query = urlencode({**answer, "next": "https://evil.example/", "return_to": "//evil.example"})
    callback = client.get(f"/onboarding/callback/?{query}")
    assert callback.status_code == 302 and callback.headers["Location"] == "/dashboard/"
    assert "Renewed SAM Control Panel (demo)" in client.get("/dashboard/").content.decode()
    assert ConsentGrant.objects.get().generation == consented_grant.generation + 1


def test_a_forged_renewal_answer_changes_nothing_and_leads_back_to_the_grants(
    consented_grant, panel_settings
) -> None:
    client = _alice(consented_grant)
    answer = _renew_answer(client, consented_grant, panel_settings)
    forged = client.get(f"/onboarding/callback/?{urlencode({**answer, 'state': 'forged'})}", follow=True)
    assert forged.redirect_chain == [("/onboarding/failed/", 302)]
    body = forged.content.decode()
    assert forged.status_code == 400 and "expired or was already used" in body
    assert 'href="/dashboard/">Back to your grants' in body and "Renewed" not in body
    unchanged = ConsentGrant.objects.get()
    assert unchanged.generation == consented_grant.generation
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RENEWED).exists()
    # The real answer cannot be used afterwards either: the flow was used up by the forged one.
    assert (
        client.get(f"/onboarding/callback/?{urlencode(answer)}").headers["Location"] == "/onboarding/failed/"
    )
    assert ConsentGrant.objects.get().generation == consented_grant.generation


def test_a_connection_started_from_onboarding_never_lands_in_the_dashboard(
    consented_grant, panel_settings
) -> None:
    """Signed in to the dashboard, the same browser connects from the onboarding page: that is no
    renewal, whatever the browser sends, so it asks before replacing and ends on onboarding's pages."""
    client = _alice(consented_grant)
    run = consent_run(client, panel_settings)
    assert run.callback.headers["Location"] == "/onboarding/confirm/"
    assert run.confirmation is not None and run.page.status_code == 200
    assert "is connected" in run.page.content.decode()


# --- clean URLs after every callback ----------------------------------------------------------------


def test_every_callback_outcome_is_a_redirect_to_a_page_that_survives_a_reload(
    application, panel_settings, client: Client
) -> None:
    run = consent_run(client, panel_settings, accept=False)
    assert run.callback.status_code == 302 and run.callback.headers["Location"] == "/onboarding/failed/"
    again = client.get("/onboarding/failed/")
    assert again.status_code == 403 and "Consent was cancelled" in again.content.decode()
    run = consent_run(client, panel_settings)
    assert run.callback.headers["Location"] == "/onboarding/done/"
    assert client.get("/onboarding/done/").status_code == 200  # a reload shows it again
    assert Client().get("/onboarding/failed/").headers["Location"] == "/onboarding/"  # nothing to show


def test_the_dashboard_sign_in_failure_is_a_clean_url_that_survives_a_reload(consented_grant, panel_settings):
    client = Client()
    page = dashboard_sign_in(client, panel_settings, demo.NO_MFA_USER, mfa=False)
    assert page.request["PATH_INFO"] == "/dashboard/signin/failed/" and page.status_code == 403
    assert client.get("/dashboard/signin/failed/").status_code == 403
    assert Client().get("/dashboard/signin/failed/").headers["Location"] == "/dashboard/signin/"


# --- a user without an MFA method -------------------------------------------------------------------


def test_consent_by_a_user_without_an_mfa_method_tells_him_how_to_register_one(
    application, panel_settings, client: Client
) -> None:
    """Contoso requires MFA (as Partner Center asks of partner tenants); Nick has no method: Entra
    answers AADSTS50079, and the page says how to register one, not "complete MFA"."""
    panel_settings.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    run = consent_run(client, panel_settings, upn=demo.NO_MFA_USER, mfa=False)
    body = run.page.content.decode()
    assert run.page.status_code == 403
    assert "Register a multi-factor authentication method first" in body
    assert 'href="https://aka.ms/mfasetup"' in body and "Security info" in body
    assert "complete multi-factor" not in body and "Consent is required" not in body
    assert not ConsentGrant.objects.exists()


def test_dashboard_sign_in_by_a_user_without_an_mfa_method_tells_him_how_to_register_one(
    consented_grant, panel_settings
) -> None:
    panel_settings.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    page = dashboard_sign_in(Client(), panel_settings, demo.NO_MFA_USER, mfa=True)
    body = page.content.decode()
    assert page.status_code == 403 and "Register a multi-factor authentication method first" in body
    assert 'href="https://aka.ms/mfasetup"' in body


def test_a_sign_in_without_mfa_offers_the_registration_page_too(application, panel_settings, client) -> None:
    """Without a tenant rule Entra lets Nick in without MFA and says nothing of his methods: the
    refusal covers both cases, and links the registration page."""
    run = consent_run(client, panel_settings, upn=demo.NO_MFA_USER, mfa=False)
    body = run.page.content.decode()
    assert "Multi-factor authentication is required" in body and 'href="https://aka.ms/mfasetup"' in body


def test_a_renewal_failing_for_a_missing_method_says_so() -> None:
    failure = failure_from_error_response(result={"error": "invalid_grant", "error_codes": [50079]})
    assert failure.code == "AADSTS50079" and "https://aka.ms/mfasetup" in failure.message
