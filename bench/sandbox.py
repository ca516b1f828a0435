"""Benchmark of the sandbox token endpoint: refresh_token grants (what the broker sends) from N
concurrent keep-alive connections for a fixed time.

    .venv/bin/python bench/sandbox.py [--connections 50] [--seconds 20] [--load wrk|python]

Starts its own sandbox (subprocess, state under var/bench-sandbox), consents once with the demo
admin agent, then each worker thread loops on its own requests.Session: POST a refresh_token grant
exactly as MSAL does (decorated scopes, client_info=1, client secret) and keeps the newest refresh
token. Prints req/s, p50 and p99 latency. The client runs on the same machine and competes for
the same cores, so the figures are a floor for the server.

`--load wrk` (the default when Debian's wrk is installed: `apt-get install wrk`) drives the same
requests from wrk, a C load generator that costs the shared cores far less than 50 Python threads.
Every wrk request reuses the first refresh token: Entra (and the sandbox) keep a refresh token valid
after it has been redeemed, so the server does exactly the same work per request.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
django.setup()

import msal  # noqa: E402

from sandbox import demo  # noqa: E402
from sandbox.control_client import SandboxClient, demo_msal_app, session_for, start_sandbox  # noqa: E402

SCOPE = f"{demo.PARTNER_CENTER_SCOPE} offline_access openid profile"


def demo_consent(client: SandboxClient, app: msal.ConfidentialClientApplication) -> str:
    """Consent once as the demo admin agent, with MFA; returns the refresh token."""
    flow = app.initiate_auth_code_flow(
        [demo.PARTNER_CENTER_SCOPE, demo.GRAPH_SCOPE],
        redirect_uri=demo.REDIRECT_URI,
        response_mode="form_post",
    )
    result = app.acquire_token_by_auth_code_flow(
        flow, client.sign_in(flow["auth_uri"], demo.ADMIN_AGENT), scopes=[demo.PARTNER_CENTER_SCOPE]
    )
    return str(result["refresh_token"])


def _grant_body(rt: str) -> str:
    return urlencode(
        {
            "client_id": demo.CLIENT_ID,
            "client_secret": demo.CLIENT_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": rt,
            "scope": SCOPE,
            "client_info": "1",
        }
    )


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def worker(client: SandboxClient, rt: str, stop: float, latencies: list[float], errors: list[int]) -> None:
    http = session_for(client.ca_bundle)
    url = f"{client.base_url}/{demo.CONTOSO}/oauth2/v2.0/token"
    while time.perf_counter() < stop:
        started = time.perf_counter()
        response = http.post(url, data=_grant_body(rt), headers=FORM, timeout=30)
        latencies.append(time.perf_counter() - started)
        if response.status_code == 200:
            rt = response.json()["refresh_token"]
        else:
            errors.append(response.status_code)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = os.getenv("BODY")
"""


def _wrk_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(client: SandboxClient, rt: str, connections: int, seconds: float) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    url = f"{client.base_url}/{demo.CONTOSO}/oauth2/v2.0/token"
    command = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", script.name, url]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, "BODY": _grant_body(rt)}
    ).stdout
    os.unlink(script.name)
    counters = client.counters()["token_requests"]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", output)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    print(f"wrk, {os.cpu_count()} CPUs, {connections} connections, {seconds:.0f} s")
    print(
        f"refresh_token grants: {counters['total']} ({non_2xx.group(1) if non_2xx else 0} errors), {rps:.0f} req/s"
    )
    print(f"latency p50 {_wrk_ms(*p50.groups()):.1f} ms, p99 {_wrk_ms(*p99.groups()):.1f} ms")  # type: ignore[union-attr]
    print(f"sandbox counted {counters['total']} token requests, by status {counters['by_status']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()
    state_dir = Path(__file__).resolve().parent.parent / "var" / "bench-sandbox"
    with start_sandbox(state_dir=state_dir) as client:
        rt = demo_consent(client, demo_msal_app(client))
        if args.load == "wrk":
            client.clear_counters()
            run_wrk(client, rt, args.connections, args.seconds)
            return
        latencies: list[float] = []
        errors: list[int] = []
        stop = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=worker, args=(client, rt, stop, latencies, errors))
            for _ in range(args.connections)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        counters = client.counters()["token_requests"]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.connections} connections, {elapsed:.1f} s"
    )
    print(
        f"refresh_token grants: {len(latencies)} ({len(errors)} errors), {len(latencies) / elapsed:.0f} req/s"
    )
    print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"sandbox counted {counters['total']} token requests, by status {counters['by_status']}")


if __name__ == "__main__":
    main()
