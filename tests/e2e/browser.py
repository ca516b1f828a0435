"""What every browser test shares: Debian's Chromium, screenshots at desktop and phone width, the
sandbox's sign-in page, the staff sign-in, and the page checks (Content-Security-Policy reports,
horizontal scroll, axe-core's accessibility rules)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # no py.typed
from django.contrib.auth.models import User
from django_otp.oath import totp

from controlpanel.models import StaffTOTPDevice

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# axe-core's impact levels that fail a test; "minor" and "moderate" findings are reported only.
AXE_FAILING_IMPACTS = frozenset({"serious", "critical"})
# Every browser test file's marks: skipped, with the reason, where Debian's Chromium is missing; a
# real transaction, since the live server's thread must see what the test writes.
BROWSER_TESTS = [
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
    pytest.mark.django_db(transaction=True),
]


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def shots(page: Any, name: str) -> dict[str, int]:
    """Saves the page at desktop width and at a phone's (390 px), for a person to read, and returns
    its horizontal overflow at each width, for the test to assert on."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    overflow: dict[str, int] = {}
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        suffix = "" if label == "desktop" else "-phone"
        page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)
        overflow[label] = horizontal_overflow(page)
    page.set_viewport_size(size)
    return overflow


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it stands, one line each."""
    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:3])
        for violation in results.response["violations"]
        if violation["impact"] in AXE_FAILING_IMPACTS
    ]


def sign_in_at_sandbox(page: Any, upn: str, *, mfa: bool = True) -> None:
    """The sandbox's stand-in for Microsoft's sign-in page: pick the account, say whether MFA was
    done, accept."""
    page.wait_for_selector("text=Sign in and review permissions")
    page.locator(f"input[name=account][value='{upn}']").check()
    if mfa:
        page.locator("#mfa").check()
    page.get_by_role("button", name="Accept").click()


def csp_violations(context: Any) -> list[str]:
    """Chromium's console reports of anything the Content-Security-Policy blocked, on any page
    (the sandbox's pages, standing in for Microsoft's, are not the panel's and are not counted)."""
    found: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    context.on("console", on_console)
    return found


def staff_sign_in(page: Any, base: str, *, username: str = "operator", password: str = "operator-pw") -> User:
    """Creates a superuser with a confirmed authenticator and signs in to the staff console."""
    staff = User.objects.create_superuser(username, f"{username}@example.invalid", password)
    device = StaffTOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    page.goto(f"{base}/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Authenticator code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("text=Staff console")
    return staff
