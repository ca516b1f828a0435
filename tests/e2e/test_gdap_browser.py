"""The GDAP pages in a real browser: the dashboard's section on customer relationships ending soon,
customer names on the activity page, and the staff admin's relationship list and audit trail. Each
page is saved at desktop and phone width under var/screenshots/ (not committed); the GDAP section must
not scroll sideways on a phone, and the pages must pass axe-core's serious and critical rules and the
Content-Security-Policy."""

from __future__ import annotations

from django.db import connections
from playwright.sync_api import sync_playwright

from gdap.inventory import Outcome, gdap_inventory_refresh
from sandbox import demo
from tests.e2e.browser import (
    BROWSER_TESTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    axe_violations,
    csp_violations,
    shots,
    sign_in_at_sandbox,
    staff_sign_in,
)
from tests.gdap.trail import customer_trail_make
from tokens.audit import Actor
from tokens.models import Application, ConsentGrant

pytestmark = BROWSER_TESTS


def test_gdap_on_the_dashboard_the_activity_page_and_the_admin(
    browser_panel: Application, live_server
) -> None:
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        violations = csp_violations(context)
        page = context.new_page()

        # Contoso connects; the panel reads its relationships; a service uses two customers.
        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=is connected")
        partner = ConsentGrant.objects.select_related("partner").get().partner
        assert gdap_inventory_refresh(partner_id=partner.pk).outcome is Outcome.READ
        customer_trail_make(partner=partner, actor=Actor.system("marketplace-sync"))

        # The partner's dashboard: the relationships ending soon.
        page.goto(f"{base}/dashboard/")
        page.get_by_role("button", name="Sign in with Microsoft").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("h2:has-text('Customer relationships (GDAP)')")
        section = page.locator("section[aria-labelledby=gdap-relationships]")
        assert (
            section.locator("text=Northwind Traders").count() == 1
            and section.locator("text=Litware, Inc.").count() == 1
        )
        assert shots(page, "30-gdap-dashboard") == {"desktop": 0, "phone": 0}
        assert axe_violations(page) == []

        # The activity page names the customers.
        page.get_by_role("link", name="Activity").click()
        page.wait_for_selector("h1:has-text('Activity of Contoso Partner')")
        assert page.locator("td >> text=Northwind Traders").count() >= 1
        assert page.locator("td >> text=Proseware, Inc.").count() >= 1
        assert shots(page, "31-gdap-activity") == {"desktop": 0, "phone": 0}
        assert axe_violations(page) == []

        # Staff: the relationships ending within 30 days, and the audit trail with customer names.
        staff_page = context.new_page()
        staff_sign_in(staff_page, base)
        staff_page.goto(f"{base}/admin/gdap/relationship/?ends=30")
        staff_page.wait_for_selector("text=Northwind support")
        assert staff_page.locator("td >> text=24 days").count() == 1
        assert shots(staff_page, "32-gdap-admin-relationships")["desktop"] == 0
        staff_page.goto(f"{base}/admin/tokens/auditevent/")
        staff_page.wait_for_selector(f"[title='Tenant {demo.PROSEWARE}']:has-text('Proseware, Inc.')")
        shots(staff_page, "33-gdap-admin-audit")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
