"""Staff admin: MFA at sign-in, masked secrets, read-only audit trail, audited actions, the health
page, and changelists whose query counts do not grow with the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlpanel.models import StaffTOTPDevice
from partners.models import Partner
from sandbox import demo
from tests.fixtures.staff import grant_make, otp_login, partner_make
from tokens import admin as token_admin
from tokens.audit import Actor
from tokens.credentials.applications import credential_secret_add
from tokens.issuance.broker import IssuanceSuspended, access_token_get
from tokens.models import Application, AuditEvent, ConsentGrant, KillSwitch
from tokens.renewal.liveness import sweep_heartbeat_record

pytestmark = pytest.mark.django_db

RT_CANARY = "canary-admin-refresh-token-0b7e"
SECRET_CANARY = "canary-admin-client-secret-6d1f"


@pytest.fixture
def contoso_grant(app_row: Application) -> ConsentGrant:
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    return grant_make(partner=contoso, application=app_row, refresh_token=RT_CANARY)


def test_the_admin_requires_an_otp_verified_session(staff_user: User, contoso_grant) -> None:
    password_only = Client()
    password_only.force_login(staff_user)
    response = password_only.get("/admin/tokens/consentgrant/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["Location"]
    assert password_only.get("/admin/health/").status_code == 302


def test_totp_enrolment_prints_the_uri_once(staff_user: User) -> None:
    out = StringIO()
    call_command("staff_totp_enrol", "operator", stdout=out)
    assert "otpauth://totp/" in out.getvalue()
    assert StaffTOTPDevice.objects.filter(user=staff_user, confirmed=True).count() == 1
    with pytest.raises(Exception, match="already has an authenticator"):
        call_command("staff_totp_enrol", "operator", stdout=StringIO())
    call_command("staff_totp_enrol", "operator", "--replace", stdout=StringIO())
    assert StaffTOTPDevice.objects.filter(user=staff_user).count() == 1


def test_no_token_or_secret_in_any_admin_page(staff_client: Client, contoso_grant, app_row) -> None:
    credential = credential_secret_add(application=app_row, secret=SECRET_CANARY)
    pages = [
        "/admin/tokens/consentgrant/",
        f"/admin/tokens/consentgrant/{contoso_grant.pk}/change/",
        "/admin/tokens/applicationcredential/",
        f"/admin/tokens/applicationcredential/{credential.pk}/change/",
        "/admin/tokens/auditevent/",
        "/admin/partners/partner/",
        "/admin/health/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert RT_CANARY not in body and SECRET_CANARY not in body, url
    change = staff_client.get(f"/admin/tokens/applicationcredential/{credential.pk}/change/")
    assert "secret" not in change.context["adminform"].form.fields


def test_search_and_filters(staff_client: Client, contoso_grant) -> None:
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    grant_make(
        partner=fabrikam, application=contoso_grant.application, state="needs_renewal", refresh_token="x"
    )
    for query, expected in [
        (demo.CONTOSO, "Contoso"),
        ("Fabrikam", "Fabrikam"),
        ("admin@contoso.example", "Contoso"),
    ]:
        body = staff_client.get("/admin/tokens/consentgrant/", {"q": query}).content.decode()
        assert expected in body
    only_renewal = staff_client.get("/admin/tokens/consentgrant/", {"state__exact": "needs_renewal"})
    assert "Fabrikam" in only_renewal.content.decode() and "Contoso (" not in only_renewal.content.decode()
    assert staff_client.get("/admin/partners/partner/", {"q": demo.FABRIKAM}).context["cl"].result_count == 1


def test_audit_events_are_read_only(staff_client: Client, contoso_grant) -> None:
    event = AuditEvent.objects.create(
        actor_type="system", actor_id="x", action="refreshed", partner=contoso_grant.partner
    )
    assert staff_client.get("/admin/tokens/auditevent/add/").status_code == 403
    assert staff_client.post(f"/admin/tokens/auditevent/{event.pk}/delete/").status_code == 403
    view = staff_client.get(f"/admin/tokens/auditevent/{event.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()


def _action(client: Client, url: str, action: str, pks: list[object], reason: str | None = None) -> None:
    data = {"action": action, "_selected_action": [str(pk) for pk in pks]}
    if reason is not None:  # a grave action: the confirmation page first, then the reason
        confirm = client.post(url, data)
        assert confirm.status_code == 200 and 'name="reason"' in confirm.content.decode()
        data |= {"confirmed": "1", "reason": reason}
    response = client.post(url, data)
    assert response.status_code == 302, response.content


def test_revoke_action_is_audited_with_the_staff_user(
    staff_client: Client, staff_user: User, contoso_grant
) -> None:
    _action(staff_client, "/admin/tokens/consentgrant/", "revoke", [contoso_grant.pk], reason="ticket 9")
    grant = ConsentGrant.objects.get(pk=contoso_grant.pk)
    assert grant.state == "revoked" and grant.refresh_token is None
    event = AuditEvent.objects.get(action="revoked")
    assert (event.actor_type, event.actor_id, event.detail) == ("staff", str(staff_user.pk), "ticket 9")


def test_suspend_and_resume_partner(staff_client: Client, staff_user: User, contoso_grant) -> None:
    partner = contoso_grant.partner
    _action(staff_client, "/admin/partners/partner/", "suspend", [partner.pk], reason="fraud report 17")
    assert Partner.objects.get(pk=partner.pk).status == "suspended"
    with pytest.raises(IssuanceSuspended):
        access_token_get(
            partner=partner,
            audience="graph",
            purpose="x",
            actor=Actor.system("t"),
            application=contoso_grant.application,
        )
    _action(staff_client, "/admin/partners/partner/", "resume", [partner.pk], reason="cleared")
    assert Partner.objects.get(pk=partner.pk).status == "active"
    actions = list(
        AuditEvent.objects.filter(actor_type="staff", actor_id=str(staff_user.pk)).values_list(
            "action", flat=True
        )
    )
    assert actions.count("partner_suspended") == 1 and actions.count("partner_resumed") == 1


def test_kill_switch_from_the_application_and_the_health_page(staff_client: Client, app_row) -> None:
    _action(staff_client, "/admin/tokens/application/", "kill_switch_engage", [app_row.pk], reason="drill")
    assert KillSwitch.objects.get(application=app_row).engaged
    staff_client.post(
        "/admin/health/", {"kill_switch": "engage", "confirmed": "1", "reason": "compromise drill"}
    )
    assert KillSwitch.objects.get(application=None).engaged
    assert "Engaged" in staff_client.get("/admin/health/").content.decode()
    staff_client.post("/admin/health/", {"kill_switch": "release", "confirmed": "1", "reason": "drill over"})
    assert not KillSwitch.objects.get(application=None).engaged
    assert AuditEvent.objects.filter(actor_type="staff", action="kill_switch_engaged").count() == 2
    assert AuditEvent.objects.filter(actor_type="staff", action="kill_switch_released").count() == 1


def test_refresh_now_redeems_through_the_broker_path(consented_grant, staff_user: User) -> None:
    client = Client()
    otp_login(client, staff_user)
    before = ConsentGrant.objects.get().refresh_token
    _action(client, "/admin/tokens/consentgrant/", "refresh_now", [consented_grant.pk])
    grant = ConsentGrant.objects.get()
    assert grant.refresh_token != before
    event = AuditEvent.objects.get(action="refreshed")
    assert (event.actor_type, event.actor_id) == ("staff", str(staff_user.pk))
    ConsentGrant.objects.update(state="needs_renewal")
    _action(client, "/admin/tokens/consentgrant/", "refresh_now", [consented_grant.pk])
    assert AuditEvent.objects.filter(action="refreshed").count() == 1


def test_health_page_numbers(staff_client: Client, contoso_grant) -> None:
    now = timezone.now()
    ConsentGrant.objects.filter(pk=contoso_grant.pk).update(policy_expires_at=now + timedelta(days=5))
    AuditEvent.objects.create(
        actor_type="system",
        actor_id="renewal",
        action="refresh_failed",
        outcome="failure",
        detail="partner: AADSTS50173",
    )
    AuditEvent.objects.create(
        actor_type="system", actor_id="renewal", action="refresh_failed", outcome="failure", detail="transient: 503",
        at=now - timedelta(hours=30),
    )  # fmt: skip
    summary = staff_client.get("/admin/health/").context["summary"]
    assert {row.state: row.count for row in summary.grants_by_state}["active"] == 1
    assert (summary.expiring_7_days, summary.expiring_30_days) == (1, 1)
    assert {row.failure_class: row.count for row in summary.failures_by_class_24h} == {
        "transient": 0, "partner": 1, "operator": 0, "attention": 0, "customer": 0
    }  # fmt: skip
    # An audit event of the renewal actor is not a sweep: only the heartbeat the sweep writes is.
    assert summary.last_sweep_at is None and summary.sweep_stale
    sweep_heartbeat_record(now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    page = staff_client.get("/admin/health/").content.decode()
    assert "2026-01-02 03:04:05" in page and 'id="sweep-stale"' in page
    sweep_heartbeat_record()
    page = staff_client.get("/admin/health/").content.decode()
    assert 'id="sweep-ok"' in page and 'id="sweep-stale"' not in page


def test_health_page_says_never_without_a_sweep(staff_client: Client) -> None:
    assert "Last sweep: never" in staff_client.get("/admin/health/").content.decode()


@pytest.mark.parametrize(
    "url", ["/admin/tokens/consentgrant/", "/admin/tokens/auditevent/", "/admin/partners/partner/"]
)
def test_changelist_query_counts_do_not_grow(staff_client: Client, app_row, url: str) -> None:
    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            partner = Partner.objects.create(
                tenant_id=f"00000000-0000-4000-8000-{i:012d}", display_name=f"P{i}"
            )
            grant = grant_make(partner=partner, application=app_row, refresh_token=RT_CANARY)
            AuditEvent.objects.create(actor_type="service", actor_id="s", action="token_issued", grant=grant,
                                      partner=partner, application=app_row)  # fmt: skip

    add(1, 0)
    staff_client.get(url)
    with CaptureQueriesContext(connection) as one:
        assert staff_client.get(url).status_code == 200
    add(99, 1)
    with CaptureQueriesContext(connection) as hundred:
        assert staff_client.get(url).status_code == 200
    assert len(hundred) == len(one), [q["sql"] for q in hundred.captured_queries]


def test_the_audit_list_is_paged_by_key_and_searched_through_indexes(
    staff_client: Client, contoso_grant, app_row, monkeypatch
) -> None:
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    fabrikam_grant = grant_make(partner=fabrikam, application=app_row)
    events = AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_type="service",
            actor_id="orders",
            action="token_issued" if i % 10 else "token_denied",
            partner=contoso_grant.partner if i < 150 else fabrikam,
            grant=contoso_grant if i < 150 else fabrikam_grant,
            at=timezone.now() - timedelta(minutes=i),
        )
        for i in range(160)
    )
    url = "/admin/tokens/auditevent/"

    def shown(response) -> list[int]:
        return [event.id for event in response.context["cl"].result_list]

    first = staff_client.get(url)
    cl = first.context["cl"]
    assert shown(first) == [event.id for event in events[:50]]  # newest first, 50 a page
    assert cl.result_count == 160 and not cl.newer_query and "before=" in cl.older_query
    page = first
    for _ in range(3):
        page = staff_client.get(url + page.context["cl"].older_query)
    assert shown(page) == [event.id for event in events[150:]]
    assert not page.context["cl"].older_query
    back = staff_client.get(url + page.context["cl"].newer_query)
    assert shown(back) == [event.id for event in events[100:150]]
    # A filter keeps working across pages; cursors never count as filters.
    denied = staff_client.get(url, {"action__exact": "token_denied"})
    assert denied.status_code == 200 and denied.context["cl"].result_count == 16
    assert {e.action for e in denied.context["cl"].result_list} == {"token_denied"}
    # Search: a name's beginning in any case, a tenant id, a grant id, an event number.
    for term, expected in [
        ("fabr", 10),
        ("FABRIKAM", 10),
        (demo.CONTOSO, 150),
        (str(fabrikam_grant.pk), 10),
        (str(events[5].id), 1),
        ("nobody", 0),
        ("purpose text", 0),
    ]:
        assert staff_client.get(url, {"q": term}).context["cl"].result_count == expected, term
    # The count stops at the cap and says so.
    assert "160 events" in first.content.decode()
    monkeypatch.setattr(token_admin, "AUDIT_ADMIN_COUNT_CAP", 50)
    assert "More than 50 events" in staff_client.get(url).content.decode()
    # Malformed cursors show the first page.
    assert shown(staff_client.get(url, {"before": "junk"})) == shown(first)
