"""The demo database (SQLite) stays writable under load: WAL, IMMEDIATE transactions and a busy
timeout (controlpanel/settings.py). Runs tests/fixtures/sqlite_revoke.py on a fresh SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.control_client import SandboxClient
from tests.fixtures.renewal import REPO_ROOT


def test_a_revoke_during_20_concurrent_api_callers_succeeds_and_later_calls_get_409(
    bulk_sandbox: SandboxClient, tmp_path: Path
) -> None:
    bulk_sandbox.reset()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "CACHE_URL": "locmemcache://sqlite-demo",
        "IDENTITY_AUTHORITY_HOST": bulk_sandbox.base_url,
        "IDENTITY_CA_BUNDLE": str(bulk_sandbox.ca_bundle),
        "LOG_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.sqlite_revoke", bulk_sandbox.base_url, str(bulk_sandbox.ca_bundle)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["vendor"], result["journal_mode"]) == ("sqlite", "wal")
    _, answered, status = result["revoke"]
    assert status == 200 and result["state"] == "revoked"
    calls = result["calls"]
    after = [code for started, _, code in calls if started > answered]
    during = [code for _, _, code in calls]
    assert len(calls) > 40 and len(after) >= 20  # the callers really ran on both sides of the revoke
    assert 500 not in during and set(during) <= {200, 409}
    assert set(after) == {409}, "a call that started after the revoke answered got a token"
    assert 200 in [code for _, ended, code in calls if ended < answered]
