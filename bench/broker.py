"""Benchmark of access-token issuance (tokens.issuance.broker.access_token_get), side by side with its floor.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_bench CACHE_URL=redis://127.0.0.1:6379/6 \
        .venv/bin/python bench/broker.py [--hits 3000] [--misses 60]

In one run, each measured sequentially in process, DEBUG off:
1. The floor: one durable INSERT through psycopg in autocommit (its own connection, nothing else):
   of one audit row into the audit table, which is what a hit must at least do, and of one
   bigint into a one-column table.
2. The broker's cache hit: purpose validation, then on PostgreSQL one statement that checks the
   grant, partner, kill switch and audience, reads the sealed token and inserts the audit row;
   then decryption. Target: p50 <= 2x the audit-row floor.
3. The alternative that keeps the sealed token in Redis (measured, not used): a Redis GET through
   Django's cache, decryption, and the same checked statement without the token table.
4. MSAL's own `acquire_token_silent` hit (in memory, no database, no audit, no encryption).
5. Miss: the token table is emptied before each call, and the sandbox adds 50 ms to every token
   answer, so each call takes the grant's row lock and redeems the refresh token.

Starts its own sandbox; migrates the database it is given (use a throwaway one); keeps its keyset
in var/bench-keyset.json unless one is configured. Prints p50, p99 and ops/s for each path, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
os.environ["LOG_LEVEL"] = "WARNING"
# As production runs: no query log kept by Django's debug cursor.
os.environ["DEBUG"] = "false"
if not (os.environ.get("FIELD_ENCRYPTION_KEYSET") or os.environ.get("FIELD_ENCRYPTION_KEYSET_FILE")):
    # A keyset kept under var/, so that a second run can read what the first one stored.
    from tokens.encryption.keyset import keyset_file_write, keyset_generate

    BENCH_KEYSET = ROOT / "var" / "bench-keyset.json"
    if not BENCH_KEYSET.exists():
        BENCH_KEYSET.parent.mkdir(exist_ok=True)
        keyset_file_write(path=BENCH_KEYSET, keyset_json=keyset_generate(), overwrite=False)
    os.environ["FIELD_ENCRYPTION_KEYSET_FILE"] = str(BENCH_KEYSET)
django.setup()

import msal  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.sandbox import demo_consent  # noqa: E402
from sandbox import demo  # noqa: E402
from sandbox.control_client import SandboxClient, demo_msal_app, start_sandbox  # noqa: E402
from tokens.audit import Actor  # noqa: E402
from tokens.credentials.applications import ApplicationSpec, application_upsert, credential_secret_add  # noqa: E402
from tokens.issuance import broker  # noqa: E402
from tokens.issuance.broker import access_token_get  # noqa: E402
from tokens.issuance.identity import msal_apps_clear  # noqa: E402
from tokens.issuance.vault import ConsentRecord, grant_record_consent  # noqa: E402
from tokens.models import AuditEvent, CachedAccessToken, ConsentGrant  # noqa: E402

AUDIENCES = {"partner_center": [demo.PARTNER_CENTER_SCOPE], "graph": [demo.GRAPH_SCOPE]}


Figures = tuple[float, float, float]  # p50 ms, p99 ms, ops/s


def measure(call: Callable[[], object], count: int) -> Figures:
    return measure_interleaved({"": call}, count, rounds=1)[""]


def measure_interleaved(
    calls: dict[str, Callable[[], object]], count: int, rounds: int = 20
) -> dict[str, Figures]:
    """`count` sequential calls of each, in `rounds` alternating blocks, so that a neighbour's load
    on this shared machine falls on all of them alike and their ratios stay meaningful."""
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    busy: dict[str, float] = dict.fromkeys(calls, 0.0)
    block = max(count // rounds, 1)
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(block):
                t0 = time.perf_counter()
                call()
                latencies[name].append(time.perf_counter() - t0)
            busy[name] += time.perf_counter() - started
    figures = {}
    for name, values in latencies.items():
        values.sort()
        figures[name] = (
            statistics.median(values) * 1e3,
            values[int(len(values) * 0.99) - 1] * 1e3,
            len(values) / busy[name],
        )
    return figures


def msal_baseline(client: SandboxClient) -> tuple[msal.ConfidentialClientApplication, dict, str]:
    """A plain MSAL app with its own in-memory cache, signed in once: what a script would do."""
    app = demo_msal_app(client)
    refresh_token = demo_consent(client, app)
    return app, app.get_accounts()[0], refresh_token


def grant_create(client: SandboxClient, refresh_token: str) -> ConsentGrant:
    application = application_upsert(
        spec=ApplicationSpec(
            name="bench", client_id=demo.CLIENT_ID, authority_host=client.base_url,
            redirect_uri=demo.REDIRECT_URI, audiences=AUDIENCES,
        )
    )  # fmt: skip
    credential_secret_add(application=application, secret=demo.CLIENT_SECRET)
    return grant_record_consent(
        application=application,
        consent=ConsentRecord(
            tenant_id=demo.CONTOSO, tenant_name="Contoso Partner", tenant_domain=demo.CONTOSO_DOMAIN,
            consented_by_oid="c88b68ce-d2bf-4333-b44b-9fb78ab71490", consented_by_upn=demo.ADMIN_AGENT,
            consented_by_role=ConsentGrant.Role.ADMIN_AGENT, mfa=True, audiences=list(AUDIENCES),
            refresh_token=refresh_token,
        ),
        actor=Actor.system("bench"),
    )  # fmt: skip


FLOOR_TABLE = "bench_floor"


@contextmanager
def floor_inserts(grant: ConsentGrant) -> Iterator[dict[str, Callable[[], object]]]:
    """One durable INSERT per call through psycopg alone, on its own connection (autocommit,
    synchronous commit, prepared after five calls as psycopg does by default): an audit row like
    the hit's, and a bigint into a one-column table."""
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id bigserial PRIMARY KEY)")
        audit = (
            "INSERT INTO tokens_auditevent (at, actor_type, actor_id, action, outcome, partner_id, grant_id, "
            "application_id, audience, customer_tenant_id, purpose, error_code, detail, client_ip, request_id) "
            "VALUES (now(), 'service', 'bench', 'token_issued', 'success', %s, %s, %s, 'partner_center', NULL, "
            "'floor', '', 'floor', '127.0.0.1', '')"
        )
        ids = (grant.partner_id, grant.pk, grant.application_id)
        try:
            yield {
                "audit_floor": lambda: conn.execute(audit, ids),
                "bigint_floor": lambda: conn.execute(f"INSERT INTO {FLOOR_TABLE} DEFAULT VALUES"),
            }
        finally:
            conn.execute(f"DROP TABLE {FLOOR_TABLE}")


def redis_variant(grant: ConsentGrant, actor: Actor) -> Callable[[], object]:
    """The hit as it would be with the sealed token in Redis: GET, decrypt, then the same checked
    statement without the token table (it must still check and audit in one statement)."""
    row = CachedAccessToken.objects.get(grant=grant, audience="partner_center")
    key = f"at:{grant.pk}:{grant.generation}:partner_center:-"
    cache.set(key, bytes(row.sealed), 3600)
    context = broker._seal_context(grant.pk, grant.generation, "partner_center", None)

    def hit() -> object:
        token = broker._unseal(cache.get(key), context)
        issued = broker._issue_execute(
            grant_condition=broker._BY_PARTNER_SQL + broker._ONLY_GRANT_SQL,
            params={"tenant": grant.partner.tenant_id},
            audience="partner_center",
            customer=None,
            purpose="bench",
            actor=actor,
            detail="bench: redis variant",
            with_token=False,
        )
        assert token is not None and issued is not None
        return token

    return hit


def line(name: str, figures: tuple[float, float, float], floor: float) -> str:
    return (
        f"{name:<40} p50 {figures[0]:.3f} ms  p99 {figures[1]:.3f} ms  {figures[2]:>9,.0f} ops/s"
        f"  p50 {figures[0] / floor:5.2f}x floor"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=3000)
    parser.add_argument("--misses", type=int, default=60)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    with start_sandbox(state_dir=ROOT / "var" / "bench-sandbox") as client:
        settings.IDENTITY_AUTHORITY_HOST = client.base_url
        settings.IDENTITY_CA_BUNDLE = str(client.ca_bundle)
        msal_apps_clear()
        cache.clear()
        app, account, refresh_token = msal_baseline(client)
        # Creates the grant, or renews the one an earlier run left (its token died with that sandbox).
        grant = grant_create(client, refresh_token)
        actor = Actor(type=AuditEvent.ActorType.SERVICE, id="bench", client_ip="127.0.0.1")

        def issue() -> object:
            return access_token_get(
                partner=grant.partner, audience="partner_center", purpose="bench", actor=actor
            )

        issue()  # fill the cache
        with floor_inserts(grant) as floors:
            for call in (*floors.values(), issue):  # warm: psycopg prepares after five calls
                for _ in range(10):
                    call()
            figures = measure_interleaved(
                {
                    **floors,
                    "hit": issue,
                    "redis": redis_variant(grant, actor),
                    "silent": lambda: app.acquire_token_silent([demo.PARTNER_CENTER_SCOPE], account=account),
                },
                args.hits,
            )
        audit_floor, bare_floor, hit, redis, silent = (
            figures[name] for name in ("audit_floor", "bigint_floor", "hit", "redis", "silent")
        )

        client.add_fault("latency", endpoint="token", seconds=3600, delay_seconds=0.05)
        before = client.counters()["token_requests"]["total"]

        def miss() -> object:
            CachedAccessToken.objects.all().delete()
            return issue()

        missed = measure(miss, args.misses)
        reached = client.counters()["token_requests"]["total"] - before

    print(
        f"database {connection.vendor}, {os.cpu_count()} CPUs, {args.hits} calls each, sequential, "
        "interleaved in 20 blocks"
    )
    floor = audit_floor[0]
    print(line("floor: INSERT audit row (psycopg)", audit_floor, floor))
    print(line("floor: INSERT bigint (psycopg)", bare_floor, floor))
    print(line("broker cache hit (token in PostgreSQL)", hit, floor))
    print(line("variant: token in Redis (GET + stmt)", redis, floor))
    print(line("MSAL acquire_token_silent hit", silent, floor))
    print(
        f"broker hit p50 / audit-row floor p50: {hit[0] / audit_floor[0]:.2f}x (target <= 2x); "
        f"/ bigint floor p50: {hit[0] / bare_floor[0]:.2f}x"
    )
    print(
        f"broker miss (+50 ms)  p50 {missed[0]:.1f} ms  p99 {missed[1]:.1f} ms  {missed[2]:,.1f} ops/s "
        f"({args.misses} calls, {reached} reached the sandbox)"
    )


if __name__ == "__main__":
    main()
