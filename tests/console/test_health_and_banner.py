"""The health page's states (OK green, warning amber, failing red, each with its word) and links,
and the red banner on every admin page while a kill switch is engaged, and only then."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.utils import timezone

from tests.fixtures.staff import grant_make, partner_make
from tokens.audit import Actor
from tokens.issuance.killswitch import kill_switch_set
from tokens.models import Application, AuditEvent, OperatorAlert
from tokens.renewal.liveness import sweep_heartbeat_record
from tokens.staff_admin.health import Status, health_summary_get

pytestmark = pytest.mark.django_db

DRILL = Actor.system("test")


def _badges(page: str, heading: str) -> str:
    """The status word shown in the health page's section `heading`."""
    match = re.search(
        rf"<h2[^>]*>{re.escape(heading)} <span class=\"badge badge-\w+ status-(\w+)\">(\w+)</span>", page
    )
    assert match, heading
    assert match.group(2) == Status(match.group(1)).label  # the colour's class and its word agree
    return match.group(1)


def test_a_quiet_panel_is_ok_everywhere(staff_client: Client, app_row: Application) -> None:
    sweep_heartbeat_record()
    grant_make(
        partner=partner_make(tenant_id="00000000-0000-4000-8000-000000000001", name="Calm"),
        application=app_row,
    )
    page = staff_client.get("/admin/health/").content.decode()
    assert 'id="overall-status">Overall: <span class="badge badge-ok status-ok">OK</span>' in page
    for heading in [
        "Renewal engine", "Operator alerts", "Grants needing attention", "Refresh failures, last 24 hours",
        "Policy expiry", "Kill switch",
    ]:  # fmt: skip
        assert _badges(page, heading) == "ok", heading
    assert "status-warning" not in page and "status-failing" not in page


def test_each_problem_turns_its_section_amber_or_red(staff_client: Client, app_row: Application) -> None:
    now = timezone.now()
    sweep_heartbeat_record(now=now - timedelta(days=1))  # beat stopped a day ago
    partner = partner_make(tenant_id="00000000-0000-4000-8000-000000000002", name="Busy")
    grant_make(
        partner=partner,
        application=app_row,
        state="needs_attention",
        policy_expires_at=now + timedelta(days=2),
    )
    OperatorAlert.objects.create(application=app_row, code="AADSTS1", message="unknown code")
    AuditEvent.objects.create(
        actor_type="system", action="refresh_failed", outcome="failure", detail="partner: x"
    )
    page = staff_client.get("/admin/health/").content.decode()
    assert _badges(page, "Renewal engine") == "failing"
    assert _badges(page, "Operator alerts") == "warning"  # an alert that pauses nothing
    assert _badges(page, "Grants needing attention") == "warning"
    assert _badges(page, "Refresh failures, last 24 hours") == "warning"
    assert _badges(page, "Policy expiry") == "warning"
    assert _badges(page, "Kill switch") == "ok"
    assert '<span class="badge badge-bad status-failing">Failing</span>' in page.split("</p>")[0]

    OperatorAlert.objects.create(
        application=app_row, code="AADSTS7000215", message="secret refused", pauses=True
    )
    AuditEvent.objects.create(
        actor_type="system", action="refresh_failed", outcome="failure", detail="operator: y"
    )
    kill_switch_set(engaged=True, actor=DRILL, application=app_row, reason="drill")
    page = staff_client.get("/admin/health/").content.decode()
    assert _badges(page, "Operator alerts") == "failing"  # renewals of an application are paused
    assert _badges(page, "Refresh failures, last 24 hours") == "failing"  # our own credential
    assert _badges(page, "Kill switch") == "failing"
    assert "Engaged</strong> for Reports: drill" in page
    summary = health_summary_get()
    assert summary.overall_status is Status.FAILING and summary.failures_24h == 2


def _hrefs(page: str) -> dict[str, str]:
    return {
        unescape(href): text for href, text in re.findall(r'<a[^>]* href="([^"]+)"[^>]*>([^<]*)</a>', page)
    }


def test_health_numbers_link_to_the_lists_they_count(staff_client: Client, app_row: Application) -> None:
    now = timezone.now()
    partner = partner_make(tenant_id="00000000-0000-4000-8000-000000000003", name="Linked")
    grant_make(partner=partner, application=app_row, state="needs_attention")
    OperatorAlert.objects.create(application=app_row, code="AADSTS1", message="unknown code")
    for detail, hours in [("partner: a", 1), ("partner: b", 2), ("transient: c", 3), ("partner: old", 30)]:
        AuditEvent.objects.create(
            actor_type="system",
            action="refresh_failed",
            outcome="failure",
            detail=detail,
            at=now - timedelta(hours=hours),
        )
    links = _hrefs(staff_client.get("/admin/health/").content.decode())
    checked = 0
    for href, text in links.items():
        if not text.strip().isdigit() or "lapses=" in href:
            continue  # the lapses filter is the staff-admin work's (tests/console/test_overview.py)
        response = staff_client.get(href)
        assert response.status_code == 200, href
        assert response.context["cl"].result_count == int(text), href
        checked += 1
    # grants by state (6), open alerts, paused applications, failures by class (5)
    assert checked == 13
    failures = [href for href in links if "refresh_failed" in href and "partner%3A" in href]
    assert len(failures) == 1 and links[failures[0]] == "2"


ADMIN_PAGES = [
    "/admin/",
    "/admin/models/",
    "/admin/health/",
    "/admin/tokens/consentgrant/",
    "/admin/partners/partner/",
]


def _banner(client: Client, url: str) -> str | None:
    page = client.get(url).content.decode()
    match = re.search(r'<div id="kill-switch-banner".*?</div>', page, re.S)
    return match.group(0) if match else None


def test_the_banner_shows_on_every_admin_page_only_while_engaged(
    staff_client: Client, app_row: Application
) -> None:
    assert all(_banner(staff_client, url) is None for url in ADMIN_PAGES)
    kill_switch_set(engaged=True, actor=DRILL, reason="compromise drill")
    for url in ADMIN_PAGES:
        banner = _banner(staff_client, url)
        assert banner is not None, url
        assert "Kill switch engaged</strong> for all applications:" in banner and "compromise drill" in banner
        assert 'href="/admin/health/#kill-switch"' in banner
    kill_switch_set(engaged=True, actor=DRILL, application=app_row, reason="one app")
    banner = _banner(staff_client, "/admin/tokens/consentgrant/")
    assert banner is not None and "Kill switch engaged</strong> for Reports:" in banner
    assert 'href="/admin/tokens/killswitch/?engaged__exact=1"' in banner
    assert banner.index("all applications") < banner.index("Reports")  # the global one first
    kill_switch_set(engaged=False, actor=DRILL, reason="drill over")
    banner = _banner(staff_client, "/admin/")
    assert banner is not None and "all applications" not in banner and "Reports" in banner
    kill_switch_set(engaged=False, actor=DRILL, application=app_row, reason="drill over")
    assert all(_banner(staff_client, url) is None for url in ADMIN_PAGES)


def test_the_banner_is_for_signed_in_staff_only(staff_client: Client, app_row: Application) -> None:
    kill_switch_set(engaged=True, actor=DRILL, reason="secret drill")
    login = Client().get("/admin/login/")
    assert login.status_code == 200 and "kill-switch-banner" not in login.content.decode()
    assert "kill-switch-banner" not in Client().get("/onboarding/").content.decode()
    assert _banner(staff_client, "/admin/") is not None


def test_the_kill_switch_list_of_engaged_switches_is_what_the_banner_links_to(
    staff_client: Client, app_row: Application
) -> None:
    kill_switch_set(engaged=True, actor=DRILL, application=app_row, reason="one app")
    kill_switch_set(engaged=False, actor=DRILL, reason="")
    listed = staff_client.get("/admin/tokens/killswitch/?engaged__exact=1").context["cl"]
    assert [switch.application for switch in listed.result_list] == [app_row]
