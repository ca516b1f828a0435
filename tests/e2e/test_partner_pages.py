"""Every partner page in a real browser (Debian's Chromium through Playwright) at 1280 px and at a
phone's 390 px: no horizontal scroll, no serious or critical axe-core finding, nothing blocked by the
Content-Security-Policy. Each page visited is saved under var/screenshots/partner-*.png (not
committed) for a person to look at.

The pages carry what issue 16 asks of them: audiences in words, relative dates with the exact time
kept, coloured outcomes with their words, the activity's date range (a bad one explained) and its CSV
export, a renewal that ends in the dashboard saying "Renewed", callbacks that end on clean URLs that
survive a reload, and the way to register an MFA method for a user who has none.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from django.db import connections
from django.utils import timezone
from playwright.sync_api import sync_playwright

from sandbox import demo
from tests.e2e.browser import (
    BROWSER_TESTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    axe_violations,
    csp_violations,
    shots,
    sign_in_at_sandbox,
)
from tests.fixtures.panel import AUDIENCES
from tests.fixtures.sandbox import RunningSandbox
from tests.fixtures.staff import grant_make
from tokens.audit import Actor
from tokens.models import Application, AuditEvent, ConsentGrant
from tokens.renewal.contacts import notification_contact_add

pytestmark = BROWSER_TESTS

LONG_UPN = "maximiliana.administratorin-von-langenberg@contosopartnerinternationalholdings.onmicrosoft.com"
LONG_PURPOSE = (
    "reconcile-monthly-azure-consumption-for-customer-subscriptions-and-invoice-lines-"
    "2b5f7c4e0d9a4f1e8c3b6a7d9e0f1a2b"
)


def check(page: Any, name: str) -> None:
    """Screenshots at both widths, no horizontal scroll at either, axe-core clean at both."""
    assert shots(page, f"partner-{name}") == {"desktop": 0, "phone": 0}, name
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        assert axe_violations(page) == [], (name, viewport["width"])
    page.set_viewport_size(DESKTOP)


def _browser(playwright: Any) -> tuple[Any, Any, list[str], Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    context = browser.new_context(ignore_https_errors=True, viewport=DESKTOP)
    return browser, context, csp_violations(context), context.new_page()


def _busy_partner(grant: ConsentGrant, reports: Application) -> None:
    """What makes a page wide: a long UPN, a long purpose, customer GUIDs, several grants and
    states, a contact with a long address, and enough events of every kind."""
    partner = grant.partner
    now = timezone.now()
    grant_make(
        partner=partner,
        application=reports,
        refresh_token="browser-partner-pages-refresh-token",
        consented_by_upn=LONG_UPN,
        state=ConsentGrant.State.NEEDS_RENEWAL,
        failure_message="The refresh token expired after 90 days without use. The partner must consent again.",
        last_refreshed_at=now - timedelta(days=91),
        last_used_at=now - timedelta(days=91, hours=3),
        audiences=["partner_center", "graph", "arm"],
    )
    notification_contact_add(
        partner=partner,
        email="operations-notifications-distribution-list@contosopartner.example",
        actor=Actor.system("e2e"),
    )
    kinds = [
        ("token_issued", "success", "graph", demo.ADATUM, LONG_PURPOSE, ""),
        ("token_denied", "denied", "arm", demo.NORTHWIND, "=cmd|' /C calc'!A0", "grant_revoked"),
        ("refresh_failed", "failure", "", None, "", "AADSTS700082"),
        ("state_changed", "success", "", None, "", ""),
        ("refreshed", "success", "partner_center", None, "", ""),
    ]
    AuditEvent.objects.bulk_create(
        AuditEvent(
            at=now - timedelta(hours=i), actor_type="service", actor_id="marketplace-orders-service",
            action=action, outcome=outcome, partner=partner, grant=grant, application=grant.application,
            audience=audience, customer_tenant_id=customer, purpose=purpose, error_code=code,
            detail="" if purpose else f"renewal sweep {i}",
        )
        for i in range(30)
        for action, outcome, audience, customer, purpose, code in [kinds[i % len(kinds)]]
    )  # fmt: skip


def test_every_partner_page_on_a_desktop_and_a_phone(
    browser_panel: Application, browser_sandbox: RunningSandbox, live_server
) -> None:
    base = live_server.url
    with sync_playwright() as playwright:
        browser, context, violations, page = _browser(playwright)

        # Onboarding: the audiences in words, then a cancelled consent: its page is a clean URL.
        page.goto(f"{base}/onboarding/")
        for name in ("Partner Center", "Microsoft Graph", "Azure Resource Manager"):
            assert page.get_by_role("cell", name=name).count() == 1
        check(page, "onboarding")
        page.get_by_role("button", name="Connect").click()
        page.wait_for_selector("text=Sign in and review permissions")
        page.get_by_role("button", name="Cancel").click()
        page.wait_for_selector("h1:has-text('Consent was cancelled')")
        assert page.url == f"{base}/onboarding/failed/"
        page.reload()
        page.wait_for_selector("h1:has-text('Consent was cancelled')")
        check(page, "onboarding-cancelled")

        # Connect: the answer's code leaves the address bar, and a reload shows the same page.
        page.get_by_role("link", name="Back to onboarding").click()
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=is connected")
        assert page.url == f"{base}/onboarding/done/"
        page.reload()
        page.wait_for_selector("text=Partner Center, Microsoft Graph, Azure Resource Manager")
        check(page, "onboarding-done")

        # Connecting again asks first; its page is a clean URL too.
        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=continuing replaces it")
        assert page.url == f"{base}/onboarding/confirm/"
        check(page, "onboarding-confirm")
        page.get_by_role("button", name="Cancel").click()

        grant = ConsentGrant.objects.select_related("partner", "application").get()
        reports = Application.objects.create(
            name="Marketplace reports",
            client_id="0e1f5a9c-0000-4000-8000-00000000reps",
            authority_host=browser_panel.authority_host,
            redirect_uri=browser_panel.redirect_uri,
            audiences=AUDIENCES,
        )
        _busy_partner(grant, reports)

        # Dashboard sign-in, then the grants: audiences in words, relative dates with exact ones.
        page.goto(f"{base}/dashboard/")
        check(page, "signin")
        page.get_by_role("button", name="Sign in with Microsoft").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("h1:has-text('Grants of Contoso Partner')")
        assert page.url == f"{base}/dashboard/"
        body = page.inner_text("main")
        assert "Partner Center, Microsoft Graph, Azure Resource Manager" in body
        assert "lapses in 89 days" in body and "91 days ago" in body and "partner_center" not in body
        expiry = page.locator("time").filter(has_text="in 89 days").first
        assert expiry.get_attribute("datetime") and expiry.get_attribute("title").endswith(" UTC")
        check(page, "grants")

        # Renewing from the dashboard ends there, saying "Renewed".
        before = ConsentGrant.objects.get(pk=grant.pk)
        page.get_by_role("button", name="Renew SAM Control Panel (demo)").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=Renewed SAM Control Panel (demo) for Contoso Partner")
        assert page.url == f"{base}/dashboard/"
        check(page, "renewed")
        assert ConsentGrant.objects.get(pk=grant.pk).generation == before.generation + 1
        page.reload()
        assert page.locator("text=Renewed SAM Control Panel").count() == 0  # said once

        # The renew page an e-mail links to, and revoking through its confirmation.
        lapsed = ConsentGrant.objects.get(application=reports)
        page.goto(f"{base}/dashboard/grants/{lapsed.pk}/renew/")
        page.wait_for_selector("h1:has-text('Renew Marketplace reports for Contoso Partner')")
        check(page, "renew")
        page.goto(f"{base}/dashboard/")
        page.get_by_role("link", name="Revoke Marketplace reports…").click()
        page.wait_for_selector("text=Yes, revoke now")
        check(page, "revoke-confirm")
        page.get_by_role("button", name="Yes, revoke now").click()
        page.wait_for_selector("text=remove the application from your tenant")
        check(page, "revoked")

        # Activity: coloured outcomes with their words, audiences in words, customers, relative times.
        page.get_by_role("link", name="Activity").click()
        page.wait_for_selector("h1:has-text('Activity of Contoso Partner')")
        refused = page.locator(".tone-bad", has_text="Access token refused").first
        issued = page.locator(".tone-good", has_text="Access token issued").first
        assert refused.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 235, 233)"
        assert issued.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(218, 251, 225)"
        body = page.inner_text("main")
        assert "Microsoft Graph" in body and f"customer {demo.ADATUM}" in body and "hours ago" in body
        check(page, "activity")

        # The date range; a bad one (typed into the address) is explained, with nothing listed.
        today = timezone.now().date()
        page.fill("#since", (today - timedelta(days=1)).isoformat())
        page.fill("#until", today.isoformat())
        page.select_option("#outcome", "denied")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_selector("text=Denied (grant_revoked)")
        count = AuditEvent.objects.filter(partner=grant.partner, outcome="denied").count()
        page.wait_for_selector(f"text={count} events.")
        check(page, "activity-filtered")
        with page.expect_download() as download:
            page.get_by_role("link", name=f"Download these {count} events as CSV").click()
        with open(download.value.path(), encoding="utf-8") as exported:
            rows = list(csv.reader(io.StringIO(exported.read())))
        assert len(rows) == count + 1 and {row[2] for row in rows[1:]} == {"Denied"}
        assert {row[9] for row in rows[1:]} == {"'=cmd|' /C calc'!A0"}  # neutralised formula
        page.goto(f"{base}/dashboard/activity/?since=2026-02-30&until=someday")
        page.wait_for_selector("text=“From” (2026-02-30) is not a day of the calendar.")
        assert "“To” must be a date written YYYY-MM-DD" in page.inner_text("main")
        assert page.locator("table").count() == 0
        check(page, "activity-bad-dates")

        # Notification contacts, with a long address.
        page.get_by_role("link", name="Notification contacts").click()
        page.wait_for_selector("h1:has-text('Notification contacts')")
        check(page, "contacts")

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("text=You are signed out")
        check(page, "signed-out")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()


def test_a_user_without_an_mfa_method_is_told_how_to_register_one(
    browser_panel: Application, browser_sandbox: RunningSandbox, live_server
) -> None:
    """Contoso requires MFA; Nick has no method: Entra (the sandbox) answers AADSTS50079, and both the
    consent and the dashboard sign-in say how to register a method, on clean URLs."""
    base = live_server.url
    with sync_playwright() as playwright:
        browser, context, violations, page = _browser(playwright)
        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=is connected")
        browser_sandbox.control.tenant_policy(demo.CONTOSO, require_mfa=True)

        page.goto(f"{base}/dashboard/")
        page.get_by_role("button", name="Sign in with Microsoft").click()
        sign_in_at_sandbox(page, demo.NO_MFA_USER, mfa=False)
        page.wait_for_selector("h1:has-text('Register a multi-factor authentication method first')")
        assert page.url == f"{base}/dashboard/signin/failed/"
        link = page.get_by_role("link", name="Register a method in Security info")
        assert link.get_attribute("href") == "https://aka.ms/mfasetup"
        assert "complete multi-factor authentication" not in page.inner_text("main")
        page.reload()
        page.wait_for_selector("h1:has-text('Register a multi-factor authentication method first')")
        check(page, "signin-no-mfa-method")

        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.NO_MFA_USER, mfa=True)
        page.wait_for_selector("h1:has-text('Register a multi-factor authentication method first')")
        assert page.url == f"{base}/onboarding/failed/"
        check(page, "onboarding-no-mfa-method")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
    assert ConsentGrant.objects.get().consented_by_upn == demo.ADMIN_AGENT  # Nick changed nothing


def test_the_administrator_consent_pages(browser_panel: Application, live_server) -> None:
    """Woodgrove lacks tenant-wide consent: the page that asks for it and the one after it, on clean
    URLs, at both widths."""
    base = live_server.url
    with sync_playwright() as playwright:
        browser, context, violations, page = _browser(playwright)
        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_AGENT)
        page.wait_for_selector("text=must approve this application first")
        assert page.url == f"{base}/onboarding/failed/"
        check(page, "admin-consent-needed")
        page.get_by_role("button", name="I am an administrator").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_GLOBAL_ADMIN)
        page.wait_for_selector("h1:has-text('Administrator consent given')")
        assert page.url == f"{base}/onboarding/admin-consent/done/"
        page.reload()
        page.wait_for_selector("h1:has-text('Administrator consent given')")
        check(page, "admin-consent-given")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
