"""The staff pages for grants, service clients and the kill switch in a real browser (Debian's
Chromium): the grants list fits 1280 px, a grant's page refreshes and revokes it (with a reason)
and links to its events, a new service client's key is shown once with a copy button, and the
kill switch is engaged and released with a reason. Every page is saved at 1280 and 390 px under
var/screenshots/staff-*.png; no page breaks the Content-Security-Policy."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db import connections
from django.utils import timezone
from playwright.sync_api import sync_playwright

from partners.models import Partner
from sandbox import demo
from tests.e2e.browser import (
    BROWSER_TESTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    csp_violations,
    shots,
    sign_in_at_sandbox,
    staff_sign_in,
)
from tests.fixtures.staff import grant_make
from tokens.models import Application, AuditEvent, ConsentGrant, KillSwitch, ServiceClient

pytestmark = BROWSER_TESTS

KEY = re.compile(r"samcp_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")


def _more_grants(application: Application) -> None:
    """Partners in every state beside the consented one, some with long names."""
    now = timezone.now()
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("Northwind Traders Cloud Solutions International", "expiring", {"policy_expires_at": now + timedelta(days=5)}),
        ("Fabrikam", "needs_renewal", {
            "failure_class": "partner", "failure_code": "AADSTS700082",
            "failure_message": "The refresh token has expired due to inactivity.", "failure_count": 1,
        }),
        ("Woodgrove Bank Managed Services", "needs_attention", {
            "failure_class": "attention", "failure_code": "AADSTS9999999", "failure_message": "Unknown code.",
        }),
        ("Adventure Works", "active", {"policy_expires_at": now + timedelta(days=20),
                                       "last_refreshed_at": now - timedelta(hours=3), "last_used_at": now}),
        ("Litware", "expired", {"policy_expires_at": now - timedelta(days=3), "refresh_token": None}),
        ("Tailspin Toys", "revoked", {"refresh_token": None}),
    ]  # fmt: skip
    for number, (name, state, fields) in enumerate(rows):
        partner = Partner.objects.create(
            tenant_id=f"3f0c7a52-0000-4000-8000-{number:012d}", display_name=name, domain=f"p{number}.example"
        )
        grant_make(partner=partner, application=application, state=state, **fields)


def test_grants_service_clients_and_the_kill_switch(browser_panel: Application, live_server) -> None:
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # A grant with a real refresh token (the sandbox's), so that Refresh now redeems it.
        partner_context = browser.new_context(ignore_https_errors=True)
        partner_page = partner_context.new_page()
        partner_page.goto(f"{base}/onboarding/")
        partner_page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(partner_page, demo.ADMIN_AGENT)
        partner_page.wait_for_selector("text=is connected")
        partner_context.close()
        grant = ConsentGrant.objects.select_related("partner").get()
        _more_grants(browser_panel)

        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
        )
        violations = csp_violations(context)
        page = context.new_page()
        staff_sign_in(page, base)

        # The grants list: names, coloured states in words, lapse in days; no horizontal scroll.
        page.goto(f"{base}/admin/tokens/consentgrant/")
        overflows = {"staff-grants": shots(page, "staff-grants")}
        results = page.locator("#changelist .results")
        assert results.evaluate("e => e.scrollWidth - e.clientWidth") == 0, "the table scrolls inside its box"
        assert (
            page.locator(f"span[title='Tenant {grant.partner.tenant_id}']").inner_text() == "Contoso Partner"
        )
        for word in ("Active", "Expiring", "Needs renewal", "Needs attention", "Expired", "Revoked"):
            assert page.locator(".badge", has_text=word).count() >= 1, word
        assert page.locator("text=lapses in 5 days").count() == 1
        assert page.locator("text=lapsed 3 days ago").count() == 1
        # The filters the admin home links to.
        page.get_by_role("link", name="In the next 7 days").click()
        page.wait_for_url(re.compile(r"\?lapses=7$"))
        assert page.locator("#result_list tbody tr").inner_text().strip().startswith("Northwind")
        page.goto(f"{base}/admin/tokens/consentgrant/?lapses=lapsed")
        assert page.locator("#result_list tbody tr").count() == 1
        page.goto(f"{base}/admin/tokens/consentgrant/?state=needs_renewal")
        assert page.locator("#result_list tbody tr").inner_text().strip().startswith("Fabrikam")
        # Search by tenant id.
        page.goto(f"{base}/admin/tokens/consentgrant/")
        page.locator("#searchbar").fill(str(grant.partner.tenant_id))
        page.locator("#searchbar").press("Enter")
        page.wait_for_url(re.compile(r"\?q="))
        assert page.locator("#result_list tbody tr").count() == 1

        # A grant's page: its title in words, Refresh now, Revoke with a reason, its events.
        page.get_by_role("link", name="Contoso Partner").click()
        page.wait_for_selector("h1:has-text('SAM Control Panel (demo) for Contoso Partner')")
        assert str(grant.pk) not in page.title() and str(grant.pk) not in page.locator("h1").inner_text()
        overflows["staff-grant"] = shots(page, "staff-grant")
        before = ConsentGrant.objects.get(pk=grant.pk).last_refreshed_at
        page.get_by_role("button", name="Refresh now").click()
        page.wait_for_selector("text=SAM Control Panel (demo) for Contoso Partner: refreshed.")
        assert ConsentGrant.objects.get(pk=grant.pk).last_refreshed_at != before
        overflows["staff-grant-refreshed"] = shots(page, "staff-grant-refreshed")
        page.get_by_role("link", name="Revoke…").click()
        page.wait_for_selector("h1:has-text('Revoke SAM Control Panel (demo) for Contoso Partner')")
        overflows["staff-grant-revoke-confirm"] = shots(page, "staff-grant-revoke-confirm")
        page.get_by_label("Reason (recorded in the audit trail)").fill("partner asked by phone, ticket 314")
        page.get_by_role("button", name="Revoke").click()
        page.wait_for_selector("text=SAM Control Panel (demo) for Contoso Partner: revoked.")
        assert ConsentGrant.objects.get(pk=grant.pk).state == ConsentGrant.State.REVOKED
        assert page.get_by_role("button", name="Refresh now").count() == 0
        overflows["staff-grant-revoked"] = shots(page, "staff-grant-revoked")
        page.get_by_role("link", name="Events of this grant").click()
        page.wait_for_selector("#changelist")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 3, rows.all_inner_texts()  # consented, refreshed, revoked
        actions = " ".join(rows.all_inner_texts())
        assert "Revoked" in actions and "Refresh token redeemed" in actions and "Consented" in actions
        overflows["staff-grant-events"] = shots(page, "staff-grant-events")
        revoked = AuditEvent.objects.get(action=AuditEvent.Action.REVOKED)
        assert (revoked.actor_type, revoked.detail) == ("staff", "partner asked by phone, ticket 314")

        # A service client: audiences ticked, networks one per line; a bad line saves nothing.
        page.goto(f"{base}/admin/tokens/serviceclient/add/")
        page.get_by_label("Name").fill("orders")
        page.get_by_label("Microsoft Graph (graph)").check()
        page.get_by_label("Partner Center (partner_center)").check()
        page.get_by_label("Allowed networks").fill("10.0.0.0/8\n192.168.1.300/24")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_selector("text=“192.168.1.300/24”, is not a network")
        assert not ServiceClient.objects.exists()
        overflows["staff-service-client-error"] = shots(page, "staff-service-client-error")
        page.get_by_label("Allowed networks").fill("10.0.0.0/8\n\n2001:db8::/32\n")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_selector("h1:has-text('Key for orders')")
        key = page.locator("#service-client-key").inner_text().strip()
        assert KEY.fullmatch(key)
        page.get_by_role("button", name="Copy the key").click()
        page.wait_for_selector("text=Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == key
        overflows["staff-service-client-key"] = shots(page, "staff-service-client-key")
        client = ServiceClient.objects.get()
        assert (client.audiences, client.cidrs) == (
            ["partner_center", "graph"],
            ["10.0.0.0/8", "2001:db8::/32"],
        )
        page.reload()
        page.wait_for_selector("h1:has-text('Change service client')")
        assert key not in page.content() and KEY.search(page.content()) is None
        assert ServiceClient.objects.count() == 1
        assert page.get_by_label("Allowed networks").input_value() == "10.0.0.0/8\n2001:db8::/32"
        overflows["staff-service-client"] = shots(page, "staff-service-client")

        # The kill switch for one application: a reason first; ENGAGED in red, Released in green.
        page.goto(f"{base}/admin/tokens/application/")
        page.get_by_role("row", name=re.compile("SAM Control Panel")).get_by_role("checkbox").check()
        page.select_option("select[name=action]", "kill_switch_engage")
        page.get_by_role("button", name="Go").click()
        page.wait_for_selector("h1:has-text('Engage the kill switch')")
        overflows["staff-kill-switch-confirm"] = shots(page, "staff-kill-switch-confirm")
        page.get_by_label("Reason (recorded in the audit trail)").fill("credential leak drill")
        page.get_by_role("button", name="Engage the kill switch").click()
        page.wait_for_selector("text=Issuance suspended for 1.")
        assert KillSwitch.objects.get(application=browser_panel).engaged
        page.goto(f"{base}/admin/tokens/killswitch/")
        engaged = page.locator(".badge", has_text="ENGAGED")
        assert engaged.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(179, 38, 30)"
        overflows["staff-kill-switch-engaged"] = shots(page, "staff-kill-switch-engaged")
        page.get_by_role("row", name=re.compile("ENGAGED")).get_by_role("checkbox").check()
        page.select_option("select[name=action]", "release")
        page.get_by_role("button", name="Go").click()
        page.get_by_label("Reason (recorded in the audit trail)").fill("drill over")
        page.get_by_role("button", name="Release the kill switch").click()
        page.wait_for_selector("text=Issuance resumed for 1.")
        released = page.locator(".badge", has_text="Released")
        assert released.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(218, 251, 225)"
        assert page.locator("img[alt='True'], img[alt='False']").count() == 0
        overflows["staff-kill-switch-released"] = shots(page, "staff-kill-switch-released")
        assert not KillSwitch.objects.get(application=browser_panel).engaged
        details = list(
            AuditEvent.objects.filter(actor_type="staff", action__startswith="kill_switch").values_list(
                "action", "detail"
            )
        )
        assert sorted(details) == [
            ("kill_switch_engaged", "credential leak drill"),
            ("kill_switch_released", "drill over"),
        ]
        # No page scrolls sideways, at 1280 px or on a phone (a list's table scrolls in its own box).
        assert {name: o for name, o in overflows.items() if o != {"desktop": 0, "phone": 0}} == {}
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
