"""Benchmark of the pages and the sweep at size: 100,000 partners with one grant each and
10 million audit events (the issue-18 scale), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_scale_bench \\
    CACHE_URL=redis://127.0.0.1:6379/15 CELERY_BROKER_URL=redis://127.0.0.1:6379/14 \\
    flock /tmp/bench.lock .venv/bin/python bench/scale.py [--partners 100000] [--events 10000000]
        [--requests 20] [--reseed] [--sweep-only N]

Seeding (once; the database is kept and reused while its sizes match, `--reseed` forces it): the
database is migrated, the (empty) legacy audit partition replaced by monthly partitions over the
last 13 months, then partners, grants and audit events are loaded with COPY. One partner ("Heavy
Partner") holds 100,000 events; the rest are spread over all partners and 13 months. Then VACUUM
ANALYZE, as autovacuum would leave an append-only table.

Measured in-process through Django's test client (views, templates, queries; no HTTP server), p50
and p95 of `--requests` requests each, after one warm-up: the partner activity page (first page,
a deep page ~90,000 events down, each with a date filter, and an action filter), the admin audit
list (plain, filtered by action, searched by name, tenant id and event id), the admin grants list,
the health page, the staff console (admin home; once with an empty cache, then warm) and the
metrics endpoint. For each page the audit-table queries are EXPLAINed;
the bench says whether any plan scans the audit table sequentially.

The sweep: all grants made due, then `renewal_sweep(cap=N)` publishing to the real Redis broker
in a child process (time and peak RSS), for N = partners / 10 and N = partners, so that memory can
be compared across sizes. The broker's Redis database is flushed afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("METRICS_BEARER_TOKEN", "bench-" + "m" * 40)
if not os.environ.get("FIELD_ENCRYPTION_KEYSET"):
    from tokens.encryption.keyset import keyset_generate

    os.environ["FIELD_ENCRYPTION_KEYSET"] = keyset_generate()
django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from partners.models import AgentRole, Partner, PartnerUser  # noqa: E402
from tests.fixtures.staff import dashboard_login, otp_login  # noqa: E402
from tokens.audit_pages import Cursor  # noqa: E402
from tokens.audit_partitions import TABLE, month_next, month_start, partition_name  # noqa: E402
from tokens.models import Application, AuditEvent, ConsentGrant  # noqa: E402

HEAVY_NAME = "Heavy Partner"
HEAVY_EVENTS = 100_000
MONTHS = 13
ACTIONS = [  # (action, outcome, weight)
    ("token_issued", "success", 90),
    ("refreshed", "success", 5),
    ("token_denied", "denied", 3),
    ("refresh_failed", "failure", 1),
    ("state_changed", "success", 1),
]


def tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def copy_rows(
    table: str, columns: list[str], rows: Callable[[], Iterable[tuple[object, ...]]], *, chunk: int = 50_000
) -> None:
    """COPY the rows (an iterable of tuples) in chunks of text."""
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = io.StringIO()
            n = 0
            for row in rows():
                buffer.write("\t".join(tsv(v) for v in row))
                buffer.write("\n")
                n += 1
                if n % chunk == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())


def seeded(partners: int, events: int) -> bool:
    if "tokens_auditevent" not in connection.introspection.table_names():
        return False
    return (
        Partner.objects.count() == partners
        and Partner.objects.filter(display_name=HEAVY_NAME).exists()
        and AuditEvent.objects.filter(actor_id="bench-marker").exists()
        and _estimated_events() >= events * 0.95
    )


def _estimated_events() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(c.reltuples), 0) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        return int(cursor.fetchone()[0])


def seed(partners: int, events: int) -> None:
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    now = timezone.now()
    with connection.cursor() as cursor:
        for table in ("tokens_auditevent", "tokens_notification", "tokens_operatoralert"):
            cursor.execute(f"TRUNCATE {table} CASCADE")
        cursor.execute("TRUNCATE tokens_consentgrant, partners_partneruser, partners_partner CASCADE")
        # A year of monthly partitions, as a deployment that has run partitioned for a year has:
        # the legacy partition (empty here) is replaced by months from 13 months ago on.
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")
        start = month_start(now - timedelta(days=31 * MONTHS))
        for _ in range(MONTHS + 4):
            cursor.execute(
                f"CREATE TABLE {partition_name(start)} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                [start, month_next(start)],
            )
            start = month_next(start)
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    application, _ = Application.objects.get_or_create(
        client_id="bench-client",
        defaults={
            "name": "Bench application",
            "authority_host": "https://login.example",
            "redirect_uri": "https://panel.example/onboarding/callback/",
            "audiences": {"graph": ["https://graph.microsoft.com/.default"]},
        },
    )
    rng = random.Random(18)
    partner_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(partners)]
    grant_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(partners)]
    names = [HEAVY_NAME] + [
        f"Partner {i:06d} {rng.choice(['Ltd', 'GmbH', 'SAS', 'Inc'])}" for i in range(1, partners)
    ]
    copy_rows(
        "partners_partner",
        ["id", "tenant_id", "display_name", "domain", "status", "created_at"],
        lambda: (
            (pid, uuid.UUID(int=rng.getrandbits(128), version=4), names[i], f"p{i}.example", "active", now)
            for i, pid in enumerate(partner_ids)
        ),
    )
    print(f"  partners: {time.perf_counter() - started:.0f} s", flush=True)
    copy_rows(
        "tokens_consentgrant",
        [
            "id",
            "partner_id",
            "application_id",
            "state",
            "generation",
            "consented_by_oid",
            "consented_by_upn",
            "consented_by_role",
            "mfa_at_consent",
            "consented_at",
            "audiences",
            "policy_expires_at",
            "refresh_token",
            "last_refreshed_at",
            "failure_class",
            "failure_code",
            "failure_message",
            "failure_count",
            "created_at",
            "updated_at",
        ],  # fmt: skip
        lambda: (
            (
                gid,
                partner_ids[i],
                application.pk,
                "active",
                1,
                uuid.UUID(int=i + 1),
                f"admin@p{i}.example",
                AgentRole.ADMIN_AGENT,
                "t",
                now,
                '["graph"]',
                now + timedelta(days=rng.uniform(1, 90)),
                # Never decrypted by these pages (the field decrypts on access only).
                "bench-placeholder-not-a-ciphertext",
                now - timedelta(days=rng.uniform(0, 6)),
                "",
                "",
                "",
                0,
                now,
                now,
            )
            for i, gid in enumerate(grant_ids)
        ),
    )
    print(f"  grants: {time.perf_counter() - started:.0f} s", flush=True)
    span = timedelta(days=30 * (MONTHS - 1)).total_seconds()
    weights = [w for _, _, w in ACTIONS]

    def event_rows() -> Iterator[tuple[object, ...]]:
        for n in range(events):
            index = 0 if n < HEAVY_EVENTS else rng.randrange(partners)
            action, outcome, _ = rng.choices(ACTIONS, weights)[0]
            yield (
                now - timedelta(seconds=rng.uniform(0, span)), "service", f"service-{n % 10}", action, outcome,
                "graph", None, f"invoice sync {n % 1000}", "" if outcome == "success" else "no_grant", "",
                "10.0.0.1", "", application.pk, partner_ids[index], grant_ids[index],
            )  # fmt: skip

    copy_rows(
        TABLE,
        [
            "at",
            "actor_type",
            "actor_id",
            "action",
            "outcome",
            "audience",
            "customer_tenant_id",
            "purpose",
            "error_code",
            "detail",
            "client_ip",
            "request_id",
            "application_id",
            "partner_id",
            "grant_id",
        ],  # fmt: skip
        event_rows,
        chunk=100_000,
    )
    AuditEvent.objects.create(actor_type="system", actor_id="bench-marker", action="state_changed")
    print(f"  events: {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"seeded {partners} partners and grants, {events} audit events in {time.perf_counter() - started:.0f} s"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _populated_partitions() -> set[str]:
    """Partitions holding rows: the planner rightly scans an empty partition sequentially (reading
    nothing), so only a sequential scan of a populated one counts as a finding."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass AND c.reltuples > 1000",
            [TABLE],
        )
        return {name for (name,) in cursor.fetchall()}


def explain_audit(queries: list[dict[str, str]]) -> tuple[bool, list[str]]:
    """EXPLAIN every captured query that reads the audit table; True if any scans a populated
    partition of it sequentially."""
    seq, plans = False, []
    populated = _populated_partitions()
    with connection.cursor() as cursor:
        for query in queries:
            sql = query["sql"]
            if TABLE not in sql or not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            scanned = {
                line.split("Seq Scan on ", 1)[1].split()[0]
                for line in plan.splitlines()
                if "Seq Scan on " in line
            }
            seq = seq or bool(scanned & populated)
            plans.append(f"{sql[:300]}\n{plan}")
    return seq, plans


def measure(
    client: Client, name: str, url: str, requests: int, headers: dict[str, str] | None = None
) -> None:
    headers = headers or {}
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    with CaptureQueriesContext(connection) as captured:
        client.get(url, headers=headers)
    seq, plans = explain_audit(captured.captured_queries)
    p50, p95 = statistics.median(timings), percentile(timings, 0.95)
    verdict = "ok" if p95 <= 100 else "OVER"
    print(
        f"| {name} | {p50:.1f} | {p95:.1f} | {len(captured.captured_queries)} | "
        f"{'SEQ SCAN' if seq else 'no'} | {verdict} |",
        flush=True,
    )
    PLANS.append((name, plans))


PLANS: list[tuple[str, list[str]]] = []


def pages(requests: int) -> None:
    # The previous run's sweeps updated every grant twice; autovacuum would have cleaned up since
    # (well past its 20 % threshold): do it now so that every run measures the same table.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tokens_consentgrant")
    heavy = Partner.objects.get(display_name=HEAVY_NAME)
    member, _ = PartnerUser.objects.get_or_create(
        partner=heavy,
        object_id=uuid.UUID(int=1),
        defaults={
            "upn": "admin@heavy.example",
            "role": AgentRole.ADMIN_AGENT,
            "last_signed_in_at": timezone.now(),
        },
    )
    partner_client = dashboard_login(Client(), member)
    staff = User.objects.filter(username="bench-staff").first() or User.objects.create_superuser(
        "bench-staff", "staff@bench.example", "pw"
    )
    staff.totpdevice_set.all().delete()  # type: ignore[attr-defined]
    staff_client = Client()
    otp_login(staff_client, staff)

    # A deep page: the cursor of the heavy partner's 90,000th newest event in the last 180 days.
    since = (timezone.now() - timedelta(days=180)).date().isoformat()
    until = timezone.now().date().isoformat()
    window = AuditEvent.objects.filter(
        partner=heavy, at__gte=datetime.fromisoformat(since).replace(tzinfo=UTC)
    )
    depth = min(90_000, window.count() - 30)
    deep = window.order_by("-at", "-id").values_list("at", "id")[depth]
    deep_cursor = Cursor(deep[0], deep[1]).encode()
    any_event = AuditEvent.objects.filter(partner=heavy).order_by("-at").values_list("id", flat=True).first()
    sample_partner = Partner.objects.exclude(pk=heavy.pk).order_by("tenant_id").first()
    assert sample_partner is not None

    print("| page | p50 ms | p95 ms | queries | audit seq scan | target p95 ≤ 100 ms |")
    print("|---|---|---|---|---|---|")
    activity = "/dashboard/activity/"
    measure(
        partner_client,
        "activity, first page, date filter",
        f"{activity}?since={since}&until={until}",
        requests,
    )
    measure(
        partner_client,
        f"activity, deep page (~{depth:,} events down), date filter",
        f"{activity}?since={since}&until={until}&before={deep_cursor}",
        requests,
    )
    measure(partner_client, "activity, action filter", f"{activity}?action=token_denied", requests)
    admin_audit = "/admin/tokens/auditevent/"
    measure(staff_client, "admin audit list", admin_audit, requests)
    measure(
        staff_client,
        "admin audit list, action filter",
        f"{admin_audit}?action__exact=kill_switch_engaged",
        requests,
    )
    measure(
        staff_client,
        "admin audit list, action filter (common)",
        f"{admin_audit}?action__exact=token_denied",
        requests,
    )
    measure(staff_client, "admin audit list, search name", f"{admin_audit}?q=partner+00042", requests)
    measure(
        staff_client,
        "admin audit list, search tenant id",
        f"{admin_audit}?q={sample_partner.tenant_id}",
        requests,
    )
    measure(staff_client, "admin audit list, search event id", f"{admin_audit}?q={any_event}", requests)
    measure(staff_client, "admin grants list", "/admin/tokens/consentgrant/", requests)
    measure(
        staff_client,
        "admin grants list, search name",
        "/admin/tokens/consentgrant/?q=partner+00042",
        requests,
    )
    measure(staff_client, "health page", "/admin/health/", requests)
    # The staff console counts each finished day of its 30 once, then reads it from the cache:
    # its first view after a cache flush reads the whole window; later ones only today's events.
    cache.clear()
    started = time.perf_counter()
    assert staff_client.get("/admin/").status_code == 200
    print(
        f"| staff console, first view after a cache flush | {(time.perf_counter() - started) * 1000:.1f} | | | | |"
    )
    measure(staff_client, "staff console (admin home)", "/admin/", requests)
    measure(
        Client(),
        "metrics endpoint",
        "/metrics",
        requests,
        headers={"Authorization": f"Bearer {settings.METRICS_BEARER_TOKEN}"},
    )


def sweep_child(count: int) -> None:
    """Run in a child process: one sweep of `count` due grants; prints seconds and peak RSS."""
    from tokens.renewal.sweep import renewal_sweep

    ConsentGrant.objects.update(
        last_refreshed_at=timezone.now() - timedelta(days=8),
        renewal_enqueued_until=None,
        next_attempt_at=None,
    )
    cache.delete("renewal:sweep:lock")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = renewal_sweep(cap=count)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{len(report.grant_ids)} {seconds:.2f} {before} {peak}")


def sweeps(partners: int) -> None:
    print("\n| grants due and enqueued | time s | RSS before MiB | peak RSS MiB | growth MiB |")
    print("|---|---|---|---|---|")
    for count in (partners // 10, partners):
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        out = subprocess.run(
            [sys.executable, __file__, "--sweep-only", str(count)], capture_output=True, text=True, check=True
        ).stdout.split()
        enqueued, seconds, before, peak = int(out[-4]), float(out[-3]), int(out[-2]), int(out[-1])
        queued = redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("celery")
        print(
            f"| {enqueued:,} ({queued:,} messages in Redis) | {seconds:.1f} | {before / 1024:.0f} | "
            f"{peak / 1024:.0f} | {(peak - before) / 1024:.0f} |",
            flush=True,
        )
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--sweep-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--plans", action="store_true", help="print every EXPLAIN")
    parser.add_argument("--seed-only", action="store_true", help="seed (if needed) and stop")
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
        sys.exit("needs DATABASE_URL=postgres://... and CELERY_BROKER_URL/CACHE_URL=redis://...")
    if args.sweep_only:
        sweep_child(args.sweep_only)
        return
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"{time.ctime()} nproc {os.cpu_count()}, Python {platform.python_version()}, load {' '.join(load)}, "
        f"{args.partners:,} partners, {args.events:,} events"
    )
    if args.reseed or not seeded(args.partners, args.events):
        seed(args.partners, args.events)
    else:
        print("reusing the seeded database")
    if args.seed_only:
        return
    pages(args.requests)
    sweeps(args.partners)
    print(f"load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for name, plans in PLANS:
        if args.plans or name.startswith(("activity, deep page", "admin audit list, search name")):
            print(f"\n### {name}\n")
            for plan in plans:
                print(plan, "\n")


if __name__ == "__main__":
    main()
