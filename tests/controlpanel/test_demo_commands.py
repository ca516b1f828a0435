"""The demo's commands refuse to run in production, before they change anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tokens.models import Application

DEMO_COMMANDS = ["sandbox", "demo", "load_demo_data"]


@pytest.mark.django_db
@pytest.mark.parametrize("command", DEMO_COMMANDS)
def test_a_demo_command_refuses_in_production_and_changes_nothing(command: str) -> None:
    with override_settings(ENVIRONMENT="production"), pytest.raises(CommandError) as raised:
        call_command(command)
    assert str(raised.value) == (
        f"`manage.py {command}` is for the offline demo and refuses to run with ENVIRONMENT=production: "
        "it would start or store the sandbox's public demo material. Unset ENVIRONMENT (or set "
        "ENVIRONMENT=demo) on a machine that is not production."
    )
    assert not Application.objects.exists()
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize("command", DEMO_COMMANDS)
def test_a_demo_command_exits_non_zero_in_production(command: str) -> None:
    # load_demo_data runs the system checks first, and they refuse the demo settings in production
    # too: --skip-checks puts the refusal itself under test (sandbox and demo take no such option).
    skip = ["--skip-checks"] if command == "load_demo_data" else []
    env = {**os.environ, "ENVIRONMENT": "production", "DJANGO_SETTINGS_MODULE": "controlpanel.settings"}
    run = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", command, *skip],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert f"CommandError: `manage.py {command}` is for the offline demo" in run.stderr
