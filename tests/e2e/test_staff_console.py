"""The staff console in a real browser: the admin home (operations overview with its charts) and
the health page, with the kill switch released and then engaged, at 1280 and 390 px. Each page is
saved under var/screenshots/ (not committed) for a person to look at; the test asserts what a
person could miss: no horizontal scroll at 1280 px (nor at 390), nothing blocked by the Content-Security-Policy,
no serious or critical axe-core finding, and the banner only while engaged."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.console.data import ConsoleData, console_data_make
from tests.e2e.browser import (
    BROWSER_TESTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    axe_violations,
    csp_violations,
    shots,
    staff_sign_in,
)
from tokens.audit import Actor
from tokens.issuance.killswitch import kill_switch_set

pytestmark = BROWSER_TESTS

PAGES = {"console": "/admin/", "health": "/admin/health/"}


@pytest.fixture
def console_data(live_server, monkeypatch) -> ConsoleData:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # synchronous and safe here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return console_data_make()


def test_console_and_health_pages_with_the_kill_switch_released_and_engaged(
    console_data: ConsoleData, live_server
) -> None:
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        violations = csp_violations(context)
        page = context.new_page()
        staff_sign_in(page, base)

        def visit(name: str, path: str, *, engaged: bool) -> None:
            page.goto(f"{base}{path}")
            page.wait_for_load_state("load")
            assert (page.locator("#kill-switch-banner").count() == 1) is engaged, (name, engaged)
            overflow = shots(page, f"console-{name}{'-engaged' if engaged else ''}")
            if path in PAGES.values():  # the other admin pages are checked by their own tests
                assert overflow == {"desktop": 0, "phone": 0}, (name, overflow)
                assert axe_violations(page) == [], name

        for name, path in PAGES.items():
            visit(name, path, engaged=False)
        # The numbers are links to the lists they count; the charts are drawn, with their words.
        page.goto(f"{base}/admin/")
        assert page.locator("#state-active").inner_text() == str(console_data.by_state["active"])
        assert page.locator("svg.console-chart").count() == 4
        assert page.get_by_text("Microsoft Graph:").count() == 2
        for summary in page.locator("details summary").all():  # the tables behind the charts
            summary.click()
        assert page.locator(".console-scroll table").first.is_visible()
        assert axe_violations(page) == []
        page.get_by_role("link", name="All models").click()
        page.wait_for_selector("text=All models")
        assert page.locator("text=Kill switches").count() >= 1
        assert page.locator("text=OTP_TOTP").count() == 0

        kill_switch_set(engaged=True, actor=Actor.system("test"), reason="compromise drill")
        for name, path in {**PAGES, "grants": "/admin/tokens/consentgrant/"}.items():
            visit(name, path, engaged=True)
        banner = page.locator("#kill-switch-banner")
        assert "all applications" in banner.inner_text() and "compromise drill" in banner.inner_text()
        banner.get_by_role("link").click()
        page.wait_for_selector("#kill-switch")
        assert page.url.endswith("/admin/health/#kill-switch")

        assert violations == [], violations
        context.close()
        browser.close()
        # Inside Playwright's loop the ORM's connections live in that loop's context: closed here.
        connections.close_all()
