"""What `manage.py demo` prepares before it starts anything: the demo keyset, the sandbox's directory
with the demo application's redirect URIs on the panel's port, the environment of the demo's
processes, and the summary it prints once they all answer."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from controlpanel.models import StaffTOTPDevice
from sandbox import demo
from sandbox.directory import DEMO_DIRECTORY, load_directory
from tokens.encryption.keyset import keyset_file_is_demo, keyset_file_write, keyset_generate

DEMO_STAFF_USERNAME = "operator"
DEMO_STAFF_PASSWORD_DEFAULT = "operator-demo-password"  # noqa: S105 - public demo material
# The panel's origins that the shipped demo directory registers (sandbox/directory.demo.toml).
_DIRECTORY_PANEL_ORIGIN = re.compile(r'"http://(127\.0\.0\.1|localhost):8000/')
# Relative file names in the directory are relative to the shipped file; the copy lives elsewhere.
_DIRECTORY_RELATIVE_PATH = re.compile(r'^(\s*(?:import_)?path\s*=\s*")(?!/)', re.MULTILINE)


def demo_staff_password() -> str:
    return os.environ.get("DEMO_STAFF_PASSWORD", DEMO_STAFF_PASSWORD_DEFAULT)


def demo_keyset_ensure() -> bool:
    """Write the demo's keyset (settings.DEMO_KEYSET_FILE) unless a keyset is configured or it exists.
    Answers whether it wrote one. It encrypts demo data only."""
    path = settings.FIELD_ENCRYPTION_KEYSET_FILE
    if (
        settings.FIELD_ENCRYPTION_KEYSET
        or not path
        or not keyset_file_is_demo(path=path)
        or Path(path).exists()
    ):
        return False
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    keyset_file_write(path=Path(path), keyset_json=keyset_generate(), overwrite=False)
    return True


def demo_directory_write(*, panel_port: int, path: Path) -> None:
    """The shipped demo directory with the demo application's redirect URIs on `panel_port` (Entra,
    like the sandbox, matches a web application's redirect URI exactly), written to `path`."""
    text = _DIRECTORY_PANEL_ORIGIN.sub(
        rf'"http://\1:{panel_port}/', DEMO_DIRECTORY.read_text(encoding="utf-8")
    )
    text = _DIRECTORY_RELATIVE_PATH.sub(rf"\g<1>{DEMO_DIRECTORY.parent}/", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    panel = f"http://127.0.0.1:{panel_port}/"
    if not any(uri.startswith(panel) for uri in load_directory(path).apps[demo.CLIENT_ID].redirect_uris):
        raise CommandError(f"{path}: the demo application has no redirect URI under {panel}")


@dataclass(frozen=True)
class DemoUrls:
    panel: str
    sandbox: str

    @classmethod
    def on(cls, *, port: int, sandbox_port: int) -> DemoUrls:
        return cls(panel=f"http://127.0.0.1:{port}", sandbox=f"https://127.0.0.1:{sandbox_port}")


def demo_environment(*, urls: DemoUrls, directory: Path) -> dict[str, str]:
    """The environment of the demo's processes: the settings that name the panel's and the sandbox's
    URLs (the redirect URIs, Graph and Partner Center follow them) and the sandbox's directory."""
    return {
        **os.environ,
        "SITE_URL": urls.panel,
        "IDENTITY_AUTHORITY_HOST": urls.sandbox,
        "SANDBOX_DIRECTORY": str(directory),
        "PYTHONUNBUFFERED": "1",
    }


def demo_path_shown(path: Path) -> str:
    """A path as a person would type it in the checkout ("var/log", ".venv/bin/python")."""
    try:
        return str(path.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(path)


def demo_summary(*, urls: DemoUrls, python: Path, log_dir: Path) -> str:
    """The block printed once everything answers: where to go, how to sign in as staff, how to stop."""
    enrol = f"{demo_path_shown(python)} manage.py staff_totp_enrol {DEMO_STAFF_USERNAME}"
    user = get_user_model().objects.filter(username=DEMO_STAFF_USERNAME).first()
    password = demo_staff_password()
    if user is not None and not user.check_password(password):
        password = "(changed since the demo created it)"  # noqa: S105 - a note, not a password
    enrolled = user is not None and StaffTOTPDevice.objects.filter(user=user).exists()
    logs = demo_path_shown(log_dir)
    rule = "-" * 78
    return "\n".join(
        [
            rule,
            "The SAM control panel demo is running. Ctrl-C stops it.",
            "",
            f"  Onboarding     {urls.panel}/onboarding/   <- start here",
            f"  Dashboard      {urls.panel}/dashboard/",
            f"  Staff console  {urls.panel}/admin/",
            f"  Sandbox        {urls.sandbox}/   (local Entra ID; CA "
            f"{demo_path_shown(Path(settings.SANDBOX_CA_BUNDLE))})",
            "",
            f"  Staff login    {DEMO_STAFF_USERNAME} / {password} + a code from your authenticator app",
            f"  Enrol TOTP     {enrol}"
            + (
                "\n                 (already enrolled: add --replace for a new authenticator)"
                if enrolled
                else ""
            ),
            f"  Logs           {logs}/web.log, sandbox.log, worker.log, beat.log",
            "  Stop           Ctrl-C (stops all four processes)",
            rule,
        ]
    )
