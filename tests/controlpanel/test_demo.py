"""The demo as a new user meets it: the README's commands from a fresh shell, `make demo` on other
ports (its summary, its logs, the sandbox's redirect URIs, a consent through both, a clean stop), and
the staff TOTP enrolment's QR code.

Each demo here lives in a temporary VAR_DIR (its SQLite database, keyset, broker, sandbox state and
logs), in processes started with a near-empty environment: nothing of the test run's settings, no
FIELD_ENCRYPTION_KEYSET(_FILE)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import zxingcpp
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

from controlpanel.demo_setup import DemoUrls, demo_summary
from controlpanel.management.commands.staff_totp_enrol import BLACK_ON_WHITE, RESET, qr_text
from controlpanel.models import StaffTOTPDevice
from sandbox import demo
from sandbox.control_client import SandboxClient, free_port, parse_form, session_for
from sandbox.directory import load_directory

README = Path(settings.BASE_DIR) / "README.md"
# The README's demo commands are the ones it shows run with the checkout's interpreter.
README_COMMAND = re.compile(r"`(\.venv/bin/python manage\.py [^`]+)`")
SUMMARY_RULE = "-" * 78


def fresh_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """What a new shell has: a PATH and a HOME, and here the demo's folder."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var_dir),
        "VAR_DIR": str(var_dir),
        **extra,
    }


def manage(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def readme_commands() -> list[str]:
    return README_COMMAND.findall(README.read_text(encoding="utf-8"))


def as_written(command: str) -> list[str]:
    """The command as the README writes it; with another interpreter than the checkout's .venv
    (pytest run from elsewhere), that interpreter instead."""
    argv = shlex.split(command)
    if not (Path(settings.BASE_DIR) / argv[0]).exists():
        argv[0] = sys.executable
    return argv


# --- the README's commands from a fresh shell -----------------------------------------------------


def test_the_readme_shows_the_staff_and_service_commands() -> None:
    shown = {shlex.split(command)[2] for command in readme_commands()}
    assert {"staff_totp_enrol", "create_service_client"} <= shown


def test_every_readme_command_works_from_a_fresh_shell_after_the_demo_setup(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    setup = manage(["demo", "--setup-only"], env)
    assert setup.returncode == 0, setup.stderr
    assert (tmp_path / "demo-keyset.json").exists()
    for command in readme_commands():
        run = subprocess.run(  # noqa: S603 - the README's own commands
            as_written(command), cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert run.returncode == 0, f"{command}:\n{run.stderr}"
        if "staff_totp_enrol" in command:
            assert run.stdout.startswith("otpauth://totp/")
        if "create_service_client" in command:
            assert run.stdout.strip().startswith("samcp_")


def test_without_the_demo_setup_the_error_says_how_to_create_the_demo_keyset(tmp_path: Path) -> None:
    run = manage(["staff_totp_enrol", "operator"], fresh_env(tmp_path))
    assert run.returncode == 1
    assert f"The demo's encryption keyset {tmp_path / 'demo-keyset.json'} does not exist yet." in run.stderr
    assert "`make demo`" in run.stderr
    # Not "generate a keyset": a new keyset could not read the demo's data.
    assert "generate_keyset" not in run.stderr
    assert not (tmp_path / "demo-keyset.json").exists()


def test_production_never_uses_the_demo_keyset(tmp_path: Path) -> None:
    (tmp_path / "demo-keyset.json").write_text("{}", encoding="utf-8")
    env = fresh_env(
        tmp_path,
        ENVIRONMENT="production",
        SECRET_KEY="k" * 64,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused",
        CACHE_URL="redis://127.0.0.1:6379/0",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    run = manage(["check", "--deploy"], env)
    assert run.returncode == 1
    assert "(controlpanel.E010) No encryption keyset is configured" in run.stderr
    assert "demo-keyset.json" not in run.stderr


# --- make demo on other ports -------------------------------------------------------------------------


def read_until_summary(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """The demo's output up to the end of its summary (the second rule)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while lines.count(SUMMARY_RULE) < 2:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"the demo ended before its summary:\n{''.join(lines)}")
        lines.append(line.rstrip("\n"))
        assert time.monotonic() < deadline, "no summary in time"
    return lines


def test_make_demo_on_other_ports_prints_a_summary_connects_a_partner_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port, sandbox_port = free_port(), free_port()
    panel, sandbox_url = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{sandbox_port}"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=settings.BASE_DIR, env=fresh_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        output = read_until_summary(process, timeout=180)

        # The terminal: a few lines of progress, then the summary, last; no worker or beat banner.
        assert len(output) <= 20, output
        summary = "\n".join(output[output.index(SUMMARY_RULE) :])
        for shown in [
            f"{panel}/onboarding/",
            f"{panel}/dashboard/",
            f"{panel}/admin/",
            f"{sandbox_url}/",
            "operator / operator-demo-password",
            "manage.py staff_totp_enrol operator",
            "Ctrl-C",
        ]:
            assert shown in summary, shown
        assert "celery@" not in "\n".join(output)
        logs = tmp_path / "log"
        assert " ready." in (logs / "worker.log").read_text(encoding="utf-8")
        assert "beat: Starting" in (logs / "beat.log").read_text(encoding="utf-8")

        # The sandbox's demo registration has the panel's callbacks on this port, and only there.
        registration = load_directory(tmp_path / "sandbox" / "directory.toml").apps[demo.CLIENT_ID]
        assert f"{panel}/onboarding/callback/" in registration.redirect_uris
        assert f"{panel}/dashboard/signin/callback/" in registration.redirect_uris
        assert not [uri for uri in registration.redirect_uris if ":8000/" in uri]

        # A partner connects: the panel sends the browser to the sandbox on its port with a redirect
        # URI on the panel's, the sandbox accepts it, and the panel redeems the code there.
        browser = requests.Session()
        browser.trust_env = False
        action, fields = parse_form(browser.get(f"{panel}/onboarding/", timeout=10).text)
        start = browser.post(f"{panel}{action}", data=fields, allow_redirects=False, timeout=10)
        authorize = start.headers["Location"]
        assert authorize.startswith(f"{sandbox_url}/")
        assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [f"{panel}/onboarding/callback/"]
        sandbox = SandboxClient(sandbox_url, tmp_path / "sandbox" / "ca.pem")
        answer = sandbox.sign_in(authorize, demo.ADMIN_AGENT)
        done = browser.get(f"{panel}/onboarding/callback/", params=answer, timeout=30)
        assert done.status_code == 200
        with sqlite3.connect(tmp_path / "controlpanel.sqlite3") as database:
            [(grants,)] = database.execute("SELECT count(*) FROM tokens_consentgrant").fetchall()
        assert grants == 1

        # The port 8000 callback is not registered any more (replaced, not added).
        elsewhere = authorize.replace(f"127.0.0.1%3A{port}", "127.0.0.1%3A8000")
        assert elsewhere != authorize
        refused = session_for(tmp_path / "sandbox" / "ca.pem").get(elsewhere, timeout=10)
        assert "AADSTS50011" in refused.text

        # Ctrl-C stops all four, and says so.
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
        assert process.returncode == 0
        assert rest.strip().endswith("Demo stopped.")
        for url in (f"{panel}/healthz", f"{sandbox_url}/_sandbox/health"):
            with pytest.raises(requests.ConnectionError):
                session_for(tmp_path / "sandbox" / "ca.pem").get(url, timeout=5)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_demo_refuses_one_port_for_both(tmp_path: Path) -> None:
    run = manage(["demo", "--port", "8100", "--sandbox-port", "8100"], fresh_env(tmp_path))
    assert run.returncode == 1
    assert "--port and --sandbox-port must differ" in run.stderr
    assert not (tmp_path / "demo-keyset.json").exists()


# --- staff TOTP enrolment --------------------------------------------------------------------------

# Half blocks: two modules per character, the upper and the lower (dark = drawn).
HALF_BLOCKS = {" ": (0, 0), "\xa0": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}


def qr_decode(lines: list[str], scale: int = 4) -> list[str]:
    """What a phone's camera would read: the text QR code drawn dark on light, decoded by zxing-cpp."""
    rows: list[list[int]] = []
    for line in lines:
        cells = [HALF_BLOCKS[char] for char in line]
        rows += [[cell[0] for cell in cells], [cell[1] for cell in cells]]
    height, width = len(rows) * scale, len(rows[0]) * scale
    pixels = bytearray(height * width)
    for y in range(height):
        for x in range(width):
            pixels[y * width + x] = 0 if rows[y // scale][x // scale] else 255
    image = memoryview(bytes(pixels)).cast("B", shape=[height, width])
    return [barcode.text for barcode in zxingcpp.read_barcodes(image)]


@pytest.mark.django_db
def test_enrolment_prints_the_uri_first_then_a_compact_qr_code_of_it() -> None:
    user = User.objects.create_user("operator", password="x", is_staff=True)
    out = StringIO()
    call_command("staff_totp_enrol", "operator", stdout=out)
    lines = out.getvalue().split("\n")
    uri = lines[0]
    assert uri == StaffTOTPDevice.objects.get(user=user).config_url
    assert uri.startswith("otpauth://totp/")
    qr_lines = lines[2 : lines.index("", 2)]
    assert 20 <= len(qr_lines) <= 40
    assert max(len(line) for line in qr_lines) <= 80
    assert "\x1b" not in out.getvalue()  # not a terminal: no colours
    assert qr_decode(qr_lines) == [uri]


def test_on_a_terminal_the_code_is_black_on_white_and_still_the_same_code() -> None:
    plain = qr_text(data="otpauth://totp/x?secret=AAAA", colour=False).split("\n")
    coloured = qr_text(data="otpauth://totp/x?secret=AAAA", colour=True).split("\n")
    assert coloured == [f"{BLACK_ON_WHITE}{line}{RESET}" for line in plain]
    assert qr_decode(plain) == ["otpauth://totp/x?secret=AAAA"]


@pytest.mark.django_db
def test_the_summary_says_when_the_authenticator_is_enrolled_or_the_password_changed(tmp_path: Path) -> None:
    urls = DemoUrls.on(port=8100, sandbox_port=8543)
    python = Path(settings.BASE_DIR) / ".venv" / "bin" / "python"
    operator = User.objects.create_superuser("operator", "operator@example.invalid", "operator-demo-password")
    fresh = demo_summary(urls=urls, python=python, log_dir=Path(settings.BASE_DIR) / "var" / "log")
    assert "  Enrol TOTP     .venv/bin/python manage.py staff_totp_enrol operator\n" in fresh
    assert "operator / operator-demo-password" in fresh
    assert "var/log/web.log" in fresh

    StaffTOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    operator.set_password("changed-in-the-admin")
    operator.save()
    later = demo_summary(urls=urls, python=python, log_dir=tmp_path)
    assert "(already enrolled: add --replace for a new authenticator)" in later
    assert "operator-demo-password" not in later and "(changed since the demo created it)" in later
    assert f"{tmp_path}/web.log" in later
