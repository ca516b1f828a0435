"""Benchmark of the service token API against its baseline, in one run.

    .venv/bin/python bench/api.py [--connections 50,1] [--seconds 15] [--threads-per-worker 1]

Needs PostgreSQL and Redis on 127.0.0.1 and wrk (Debian: `apt-get install -y wrk`). It recreates
the database `cp_api_bench`, migrates it, seeds an application, a partner, an active grant and an
access token in the (Redis) token cache exactly where the broker looks for it, and creates a
service client. Then it starts gunicorn (workers = cores) on the panel with DEBUG off and drives,
with wrk and the same key:

* the baseline: `GET /api/v1/ping`, the real, documented key-check endpoint (key lookup, address
  allow-list, rate limit: everything a token call does before its own work);
* `POST /api/v1/tokens`, served from the cache: one statement that checks the grant, its partner,
  the kill switch and the key's partner scope, reads the sealed token and inserts the audit row
  (committed before the token leaves), then decryption.

For each number of connections (50, then 1), ping and tokens back to back. Prints req/s, p50 and
p99 of each, and the ratios the targets are stated in: at 50 connections tokens/ping throughput
(>= 75 %) and p99 (<= 1.5x); at 1 connection p50 (<= 1.5x). wrk runs on the same cores as the
server, PostgreSQL and Redis, so the absolute figures are a floor; the same-run ratios are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "var" / "bench-api"
DATABASE = "cp_api_bench"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
PURPOSE = "benchmark"

sys.path.insert(0, str(ROOT))


def environment() -> dict[str, str]:
    STATE.mkdir(parents=True, exist_ok=True)
    keyset_file = STATE / "keyset.json"
    if not keyset_file.exists():
        from tokens.encryption.keyset import keyset_generate

        keyset_file.write_text(keyset_generate())
        keyset_file.chmod(0o600)
    return {
        "DJANGO_SETTINGS_MODULE": "controlpanel.settings",
        "ENVIRONMENT": "demo",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        # Persistent connections, as a production deployment runs.
        "DATABASE_CONN_MAX_AGE": "600",
        "CACHE_URL": "redis://127.0.0.1:6379/14",
        "FIELD_ENCRYPTION_KEYSET_FILE": str(keyset_file),
        "LOG_LEVEL": "ERROR",
    }


def database_recreate() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=True, capture_output=True)
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "manage.py", "migrate", "-v0", "--skip-checks"], cwd=ROOT, check=True)


def seed() -> tuple[str, str]:
    """An active grant with a cached token, and a client allowed to ask for it: (key, tenant id)."""
    import uuid

    import django

    django.setup()
    from django.utils import timezone

    from partners.models import Partner
    from tokens.issuance import broker
    from tokens.models import Application, ConsentGrant
    from tokens.service_api.service_clients import service_client_create

    now = timezone.now()
    scope = "https://api.partnercenter.microsoft.com/user_impersonation"
    application = Application.objects.create(
        name="bench",
        client_id=str(uuid.uuid4()),
        authority_host="https://127.0.0.1:8443",
        redirect_uri="http://127.0.0.1:8000/onboarding/callback/",
        audiences={"partner_center": [scope]},
    )
    partner = Partner.objects.create(tenant_id=uuid.uuid4(), display_name="Bench partner")
    grant = ConsentGrant.objects.create(
        partner=partner,
        application=application,
        consented_by_oid=uuid.uuid4(),
        consented_by_upn="bench@bench.invalid",
        consented_by_role=ConsentGrant.Role.ADMIN_AGENT,
        mfa_at_consent=True,
        consented_at=now,
        audiences=["partner_center"],
        policy_expires_at=now + timedelta(days=90),
        refresh_token="unused",  # every call in this bench is a cache hit
    )
    # Where a refresh through the identity provider would have put it: every call is a cache hit.
    cached = broker.AccessToken("bench-access-token", now + timedelta(hours=2), "partner_center", scope, None)
    broker.cached_token_put(grant=grant, token=cached, now=now)
    _, key = service_client_create(
        name="bench", audiences=["partner_center"], rate_limit_per_minute=100_000_000
    )
    return key, str(partner.tenant_id)


def gunicorn_start(env: dict[str, str], workers: int, threads: int) -> subprocess.Popen[bytes]:
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "controlpanel.wsgi",
        f"--workers={workers}",
        f"--bind=127.0.0.1:{PORT}",
        "--backlog=2048",
        "--log-level=warning",
    ]
    if threads > 1:
        command += ["--worker-class=gthread", f"--threads={threads}"]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{BASE}/healthz", timeout=1)  # noqa: S310 (loopback, fixed URL)
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /healthz within 20 s")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(path: str, key: str, connections: int, seconds: int, body: dict[str, str] | None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n')
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
    output = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
         "-H", f"Authorization: Bearer {key}", f"{BASE}{path}"],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", default="50,1", help="comma-separated, one pair of runs each")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--threads-per-worker", type=int, default=1, help=">1 uses gunicorn's gthread worker")
    args = parser.parse_args()

    env = environment()
    os.environ.update(env)
    database_recreate()
    key, tenant_id = seed()
    workers = os.cpu_count() or 1
    server = gunicorn_start(env, workers, args.threads_per_worker)
    try:
        body = {"partner_tenant_id": tenant_id, "audience": "partner_center", "purpose": PURPOSE}
        check = urllib.request.Request(  # noqa: S310 (loopback, fixed URL)
            f"{BASE}/api/v1/tokens",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(check, timeout=5) as answer:  # noqa: S310
            assert json.load(answer)["access_token"] == "bench-access-token", "the seeded cache was not hit"
        # Warm both code paths in every worker, then measure them back to back.
        wrk("/api/v1/ping", key, 50, 2, None)
        wrk("/api/v1/tokens", key, 50, 2, body)
        load_before = os.getloadavg()
        results = []
        for connections in (int(count) for count in args.connections.split(",")):
            baseline = wrk("/api/v1/ping", key, connections, args.seconds, None)
            tokens = wrk("/api/v1/tokens", key, connections, args.seconds, body)
            results.append((connections, baseline, tokens))
        load_after = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"gunicorn workers={workers} threads={args.threads_per_worker}, {args.seconds} s each; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print("| connections | endpoint | requests | non-2xx | req/s | p50 | p99 |")
    print("|---|---|---|---|---|---|---|")
    for connections, baseline, tokens in results:
        for name, result in (("GET /api/v1/ping (baseline)", baseline), ("POST /api/v1/tokens", tokens)):
            print(
                f"| {connections} | {name} | {result['requests']:.0f} | {result['non_2xx']:.0f} "
                f"| {result['rps']:.0f} | {result['p50']:.2f} ms | {result['p99']:.2f} ms |"
            )
    for connections, baseline, tokens in results:
        print(
            f"{connections} connections: throughput tokens/ping {tokens['rps'] / baseline['rps']:.0%}, "
            f"p50 {tokens['p50'] / baseline['p50']:.2f}x, p99 {tokens['p99'] / baseline['p99']:.2f}x; "
            f"socket errors: ping {baseline['socket_errors']}, tokens {tokens['socket_errors']}"
        )


if __name__ == "__main__":
    main()
