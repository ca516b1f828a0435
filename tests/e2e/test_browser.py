"""The partner journey in a real browser: Playwright drives Debian's Chromium against the panel
(pytest-django's live server) and the sandbox (its own sign-in page, over TLS).

A partner connects, signs in to the dashboard with MFA, sees the grants, renews one, revokes
another (the broker refuses it at once), and reads the activity log. Each page is saved under
var/screenshots/ (not committed).
"""

from __future__ import annotations

import os

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connections
from playwright.sync_api import sync_playwright

from sandbox import demo
from tests.e2e.browser import (
    BROWSER_TESTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    axe_violations,
    csp_violations,
    shots,
    sign_in_at_sandbox,
    staff_sign_in,
)
from tests.fixtures.panel import AUDIENCES
from tests.fixtures.sandbox import RunningSandbox
from tests.fixtures.staff import grant_make
from tokens.audit import Actor
from tokens.issuance.broker import GrantNeedsRenewal, GrantRevoked, access_token_get
from tokens.models import Application, AuditEvent, ConsentGrant
from tokens.renewal.contacts import notification_contact_add

pytestmark = BROWSER_TESTS


def test_partner_journey(browser_panel: Application, live_server) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1200, "height": 900})
        violations = csp_violations(context)
        page = context.new_page()

        # The partner connects (consent with MFA) through the onboarding page.
        page.goto(f"{base}/onboarding/")
        assert axe_violations(page) == []
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=is connected")
        page.screenshot(path=str(SCREENSHOTS / "01-onboarding-done.png"), full_page=True)

        # A second application the partner also granted, to revoke below.
        partner = ConsentGrant.objects.select_related("partner").get().partner
        reports = Application.objects.create(
            name="Marketplace reports",
            client_id="0e1f5a9c-0000-4000-8000-00000000reps",
            authority_host=browser_panel.authority_host,
            redirect_uri=browser_panel.redirect_uri,
            audiences=AUDIENCES,
        )
        grant_make(partner=partner, application=reports, refresh_token="browser-test-refresh-token")

        # Dashboard sign-in with MFA.
        page.goto(f"{base}/dashboard/")
        page.screenshot(path=str(SCREENSHOTS / "02-signin.png"), full_page=True)
        page.get_by_role("button", name="Sign in with Microsoft").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("h1:has-text('Grants of Contoso Partner')")
        assert page.locator("text=Marketplace reports").count() >= 1
        page.screenshot(path=str(SCREENSHOTS / "03-grants.png"), full_page=True)

        # Renew the demo application's grant: consent again, bound to Contoso's tenant.
        before = ConsentGrant.objects.get(application=browser_panel)
        page.get_by_role("button", name="Renew SAM Control Panel (demo)").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=Renewed SAM Control Panel (demo) for Contoso Partner")
        assert page.url == f"{base}/dashboard/"
        page.screenshot(path=str(SCREENSHOTS / "04-renewed.png"), full_page=True)
        after = ConsentGrant.objects.get(application=browser_panel)
        assert after.generation == before.generation + 1 and after.consented_at > before.consented_at

        # Revoke the reports grant, through the confirmation page.
        page.goto(f"{base}/dashboard/")
        page.get_by_role("link", name="Revoke Marketplace reports…").click()
        page.wait_for_selector("text=Yes, revoke now")
        page.screenshot(path=str(SCREENSHOTS / "05-revoke-confirm.png"), full_page=True)
        page.get_by_role("button", name="Yes, revoke now").click()
        page.wait_for_selector("text=remove the application from your tenant")
        page.screenshot(path=str(SCREENSHOTS / "06-revoked.png"), full_page=True)
        with pytest.raises(GrantRevoked):
            access_token_get(
                partner=partner,
                audience="graph",
                purpose="e2e check",
                actor=Actor.system("e2e"),
                application=reports,
            )

        # The activity log tells the story.
        page.get_by_role("link", name="Activity").click()
        page.wait_for_selector("h1:has-text('Activity of Contoso Partner')")
        body = page.content()
        for label in ["Consented", "Renewed (consent again)", "Revoked", "Access token refused"]:
            assert label in body, label
        page.screenshot(path=str(SCREENSHOTS / "07-activity.png"), full_page=True)
        page.select_option("#action", "revoked")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_selector("text=1 event.")

        # Sign out ends the session.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("text=You are signed out")
        page.goto(f"{base}/dashboard/")
        assert page.url.endswith("/dashboard/signin/")
        assert violations == [], violations
        context.close()
        browser.close()
        # The ORM calls above ran inside Playwright's greenlet, whose context has its own database
        # connection: close it here, or PostgreSQL refuses to drop the test database at the end.
        connections.close_all()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVOKED, actor_id=demo.ADMIN_AGENT).count() == 1
    assert os.path.getsize(SCREENSHOTS / "03-grants.png") > 0


def test_admin_consent_then_connect_then_replace(browser_panel: Application, live_server) -> None:
    """Woodgrove has not consented tenant-wide: its admin agent is sent to an administrator, who
    grants it at Entra's /adminconsent; the agent connects; connecting again asks before replacing."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        violations = csp_violations(context)
        page = context.new_page()

        page.goto(f"{base}/onboarding/")
        shots(page, "10-onboarding")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_AGENT)
        page.wait_for_selector("text=must approve this application first")
        shots(page, "11-admin-consent-needed")
        assert ConsentGrant.objects.count() == 0

        page.get_by_role("button", name="I am an administrator").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_GLOBAL_ADMIN)
        page.wait_for_selector("h1:has-text('Administrator consent given')")
        shots(page, "12-admin-consent-given")

        page.get_by_role("link", name="Continue to onboarding").click()
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_AGENT)
        page.wait_for_selector("text=is connected")
        assert page.url == f"{base}/onboarding/done/"
        first = ConsentGrant.objects.get()

        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.WOODGROVE_AGENT)
        page.wait_for_selector("text=continuing replaces it")
        shots(page, "13-replace-confirm")
        page.get_by_role("button", name="Continue and replace it").click()
        page.wait_for_selector("text=is connected")
        shots(page, "14-connected")
        page.reload()
        page.wait_for_selector("text=is connected")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
    renewed = ConsentGrant.objects.get()
    assert renewed.generation == first.generation + 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RENEWED).count() == 1


def test_the_renewal_email_link_works_signed_out_and_signed_in(
    browser_panel: Application, browser_sandbox: RunningSandbox, live_server
) -> None:
    """An API call finds the grant revoked at Entra (AADSTS50173): exactly one e-mail, to the
    consenting user and the partner's contacts. Its link, opened in a fresh browser, goes through
    the dashboard sign-in and back to "Renew ... for Contoso Partner", whose button renews."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/onboarding/")
        page.get_by_role("button", name="Connect").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=is connected")
        context.close()

        grant = ConsentGrant.objects.select_related("partner").get()
        notification_contact_add(
            partner=grant.partner, email="noc@contoso.example", actor=Actor.system("e2e")
        )
        mail.outbox.clear()
        cache.clear()
        browser_sandbox.control.revoke_sessions(demo.ADMIN_AGENT)  # AADSTS50173 from now on
        for _ in range(2):
            with pytest.raises(GrantNeedsRenewal):
                access_token_get(
                    partner=grant.partner, audience="graph", purpose="e2e", actor=Actor.system("e2e")
                )
        (message,) = mail.outbox
        assert sorted(message.to) == sorted([demo.ADMIN_AGENT, "noc@contoso.example"])
        (link,) = [word for word in message.body.split() if "/renew/" in word]
        path = link.split("://", 1)[1].split("/", 1)[1]

        # Signed out: the link leads to the sign-in, and the sign-in back to the link's page.
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/{path}")
        assert page.url.endswith("/dashboard/signin/")
        page.get_by_role("button", name="Sign in with Microsoft").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("h1:has-text('Renew SAM Control Panel (demo) for Contoso Partner')")
        assert page.url == f"{base}/{path}"
        shots(page, "08-renew-from-email")
        # Signed in: the link opens the page at once; its button renews.
        page.goto(f"{base}/{path}")
        page.wait_for_selector("h1:has-text('Renew SAM Control Panel (demo) for Contoso Partner')")
        page.get_by_role("button", name="Renew SAM Control Panel (demo)").click()
        sign_in_at_sandbox(page, demo.ADMIN_AGENT)
        page.wait_for_selector("text=Renewed SAM Control Panel (demo) for Contoso Partner")
        assert page.url == f"{base}/dashboard/"
        context.close()
        browser.close()
        connections.close_all()
    renewed = ConsentGrant.objects.get()
    assert renewed.state == ConsentGrant.State.ACTIVE and renewed.generation == grant.generation + 1


def test_staff_sign_in_in_one_step_and_the_admin_pages_satisfy_the_policy(
    browser_panel: Application, live_server
) -> None:
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        violations = csp_violations(context)
        page = context.new_page()
        staff_sign_in(page, base)
        for path in (
            "/admin/health/",
            "/admin/tokens/serviceclient/add/",
            "/admin/tokens/consentgrant/",
            "/admin/tokens/auditevent/",
            "/admin/partners/partner/",
        ):
            page.goto(f"{base}{path}")
            page.wait_for_load_state("load")
        shots(page, "20-admin")
        assert violations == [], violations
        context.close()
        browser.close()
        connections.close_all()
