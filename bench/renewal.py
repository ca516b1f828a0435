"""Benchmark of the renewal engine: N due grants renewed by real Celery workers on this machine,
against a sandbox that answers every token request after an added latency; then the same N
refresh tokens redeemed by a plain sequential MSAL loop (the weekly-script baseline), in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_renewal_bench \\
    CACHE_URL=redis://127.0.0.1:6379/10 CELERY_BROKER_URL=redis://127.0.0.1:6379/11 \\
    .venv/bin/python bench/renewal.py [--grants 10000] [--latency-ms 50] [--workers <cores>]
        [--concurrency 16] [--pool threads]

The database must be a scratch PostgreSQL database (it is migrated and its grants deleted); both
Redis databases are flushed. Grants: one bulk partner tenant each (sandbox/bulk.py), consented
through the sign-in page before the latency is switched on. Prints one markdown table row per
measurement; figures are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
if not os.environ.get("FIELD_ENCRYPTION_KEYSET"):
    from tokens.encryption.keyset import keyset_generate

    os.environ["FIELD_ENCRYPTION_KEYSET"] = keyset_generate()

from sandbox.control_client import free_port  # noqa: E402

PORT = free_port()
STATE_DIR = Path(__file__).resolve().parent.parent / "var" / "bench-renewal"
os.environ["IDENTITY_AUTHORITY_HOST"] = f"https://127.0.0.1:{PORT}"
os.environ["IDENTITY_CA_BUNDLE"] = str(STATE_DIR / "ca.pem")
django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from partners.models import Partner  # noqa: E402
from sandbox import demo  # noqa: E402
from sandbox.bulk import bulk_directory_write, bulk_partners, bulk_refresh_tokens  # noqa: E402
from sandbox.control_client import demo_msal_app, start_sandbox  # noqa: E402
from tests.fixtures.renewal import (  # noqa: E402
    WorkerStack,
    bulk_grants_create,
    database_url,
    sandbox_application,
)
from tokens.models import Application, AuditEvent, ConsentGrant, Notification, OperatorAlert  # noqa: E402
from tokens.renewal.sweep import renewal_sweep  # noqa: E402


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pids(root: int) -> list[int]:
    """The process and its children, from /proc (no subprocess: the sampler runs every half second)."""
    children = []
    for task in Path(f"/proc/{root}/task").glob("*"):
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return [root, *children]


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(pid) for pid in tree_pids(root))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (children that exited not included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def named_pids(name: str) -> list[int]:
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def scratch_reset() -> None:
    call_command("migrate", verbosity=0)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the audit trail is append-only by trigger
            cursor.execute("ALTER TABLE tokens_auditevent DISABLE TRIGGER USER")
            cursor.execute("TRUNCATE tokens_auditevent, tokens_notification, tokens_operatoralert")
            cursor.execute("ALTER TABLE tokens_auditevent ENABLE TRIGGER USER")
    for model in (Notification, OperatorAlert, ConsentGrant, Partner, Application):
        model.objects.all().delete()
    for url in (settings.CELERY_BROKER_URL, os.environ["CACHE_URL"]):
        redis.Redis.from_url(url).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    # As docs/renewal.md recommends: one threads-pool worker per core (one process's GIL would
    # hold every worker thread to one core), 16 tasks in flight each.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
        sys.exit("needs DATABASE_URL=postgres://... and CELERY_BROKER_URL/CACHE_URL=redis://...")

    scratch_reset()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    partners = bulk_partners(args.grants)
    directory = bulk_directory_write(STATE_DIR / "directory.toml", partners)
    print(
        f"{time.ctime()} nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{args.grants} grants, latency {args.latency_ms} ms"
    )
    with start_sandbox(state_dir=STATE_DIR, directory=directory, port=PORT) as client:
        started = time.perf_counter()
        tokens = bulk_refresh_tokens(client, partners, threads=16)
        print(f"consented {len(tokens)} partners in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        application = sandbox_application(client.base_url)
        grants = bulk_grants_create(
            application=application,
            partners=partners,
            refresh_tokens=tokens,
            last_refreshed_at=timezone.now() - timedelta(days=8),
        )
        since = timezone.now()
        print(f"stored {len(grants)} grants in {time.perf_counter() - started:.0f} s")
        client.add_fault("latency", endpoint="token", seconds=86400, delay_seconds=args.latency_ms / 1000)
        client.clear_counters()

        tmp = Path(tempfile.mkdtemp(prefix="bench-renewal-"))
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "RENEWAL_SWEEP_SPREAD_SECONDS": "0",
            # As production runs (docs/operations.md): DEBUG off, persistent database connections.
            "DEBUG": "false",
            "DATABASE_CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
        }
        stack = WorkerStack(client, env, tmp, tmp)
        try:
            workers = [
                stack.worker(concurrency=args.concurrency, pool=args.pool, name=f"bench{i}")
                for i in range(args.workers)
            ]
            peak = 0
            sampling = True

            def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, sum(tree_rss_kib(w.process.pid) for w in workers))
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sandbox_pids = [int(pid) for pid in subprocess.run(
                ["pgrep", "-f", f"manage.py sandbox --port {PORT}"], capture_output=True, text=True, check=False
            ).stdout.split()]  # fmt: skip
            sandbox_pids = [pid for root in sandbox_pids for pid in tree_pids(root)]
            groups = {
                "workers": lambda: [pid for w in workers for pid in tree_pids(w.process.pid)],
                "sandbox": lambda: sandbox_pids,
                "postgres": lambda: named_pids("postgres"),
                "redis": lambda: named_pids("redis-server"),
                "bench": lambda: [os.getpid()],
            }
            cpu_before = {name: cpu_seconds(pids()) for name, pids in groups.items()}
            machine_before = machine_busy_seconds()
            started = time.perf_counter()
            with override_settings(RENEWAL_SWEEP_SPREAD_SECONDS=0):  # all at once: a backlog drain
                report = renewal_sweep(cap=args.grants)
            renewed = 0
            while renewed < args.grants and time.perf_counter() - started < 3600:
                time.sleep(0.5)
                renewed = ConsentGrant.objects.filter(last_refreshed_at__gte=since, failure_count=0).count()
            wall = time.perf_counter() - started
            cpu_used = {name: cpu_seconds(pids()) - cpu_before[name] for name, pids in groups.items()}
            machine_after = machine_busy_seconds()
            busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
            sampling = False
            sampler.join()
        finally:
            stack.stop()
        failed = ConsentGrant.objects.exclude(failure_class="").count()
        refreshed_events = AuditEvent.objects.filter(action=AuditEvent.Action.REFRESHED).count()
        requests = client.counters()["token_requests"]["by_grant_type"].get("refresh_token", 0)
        worker_desc = f"{args.workers} worker × {args.concurrency} {args.pool}"
        print(
            f"| Celery, {worker_desc} | {args.grants} | {len(report.grant_ids)} enqueued, {renewed} renewed, "
            f"{failed} failed, {requests} token requests, {refreshed_events} audited | {wall:.1f} s | "
            f"{renewed / wall:.1f} | {peak / 1024:.0f} MiB |"
        )

        print(
            "CPU per renewed grant: "
            + ", ".join(f"{name} {1000 * used / max(renewed, 1):.1f} ms" for name, used in cpu_used.items())
            + f"; the machine was {busy:.0%} busy (load from everything on it, this bench or not)"
        )
        if args.skip_baseline:
            return
        app = demo_msal_app(client, tenant="organizations")
        ok = 0
        started = time.perf_counter()
        for token in tokens:
            result = app.acquire_token_by_refresh_token(token, scopes=[demo.PARTNER_CENTER_SCOPE])
            ok += "access_token" in result
        loop = time.perf_counter() - started
        print(
            f"| sequential MSAL loop | {args.grants} | {ok} renewed | {loop:.1f} s | {ok / loop:.1f} | "
            f"{rss_kib(os.getpid()) / 1024:.0f} MiB (whole bench process) |"
        )
        print(f"speed-up: {loop / wall:.1f}x")


if __name__ == "__main__":
    main()
