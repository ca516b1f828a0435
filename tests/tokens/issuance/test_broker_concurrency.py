"""Concurrency on PostgreSQL: N callers missing the cache cause one refresh (single flight), and no
token leaves once a revoke or the kill switch has committed."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from django.db import connection
from django.db.models import QuerySet

from tests.fixtures.concurrency import run_concurrently
from tokens.audit import Actor
from tokens.issuance.broker import BrokerError, access_token_get
from tokens.issuance.killswitch import kill_switch_set
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent

CALLERS = 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_callers_cause_exactly_one_refresh(
    postgres_only, consented_grant, panel_settings, service_actor
) -> None:
    before = panel_settings.control.counters()["token_requests"]["by_grant_type"]["refresh_token"]
    # Every caller waits behind the first one's answer: make that answer slow, so they all pile up.
    panel_settings.control.add_fault("latency", count=1, delay_seconds=1)
    tokens, errors = run_concurrently(
        CALLERS,
        lambda: (
            access_token_get(
                partner=consented_grant.partner,
                audience="graph",
                purpose="concurrency test",
                actor=service_actor,
            ).token
        ),
    )

    assert errors == []
    assert len(tokens) == CALLERS
    assert len(set(tokens)) == 1
    after = panel_settings.control.counters()["token_requests"]["by_grant_type"]["refresh_token"]
    assert after - before == 1


REQUESTERS = 6


def _race(grant, actor, stop_issuance) -> tuple[datetime, int, list[str]]:
    """Requesters ask for cached tokens in a loop while one thread stops issuance. Returns when that
    thread saw its commit finish (the database clock, read after the commit), how many tokens
    left, and the refusals the requesters got."""
    access_token_get(partner=grant.partner, audience="graph", purpose="race", actor=actor)  # fill the cache
    stopped = threading.Event()
    committed_at: list[datetime] = []
    tokens: list[str] = []
    refusals: list[str] = []
    lock = threading.Lock()

    def requester() -> None:
        try:
            # Keep asking until well after the stop committed: the last calls are all refusals.
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                try:
                    token = access_token_get(
                        partner=grant.partner, audience="graph", purpose="race", actor=actor
                    )
                    with lock:
                        tokens.append(token.token)
                except BrokerError as error:
                    with lock:
                        refusals.append(error.code)
                if deadline is None and stopped.is_set():
                    deadline = time.monotonic() + 0.3
        finally:
            connection.close()

    def stopper() -> None:
        try:
            time.sleep(0.3)
            stop_issuance()
            with connection.cursor() as cursor:
                cursor.execute("SELECT clock_timestamp()")
                committed_at.append(cursor.fetchone()[0])
            stopped.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=requester) for _ in range(REQUESTERS)]
    threads.append(threading.Thread(target=stopper))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert committed_at, "the revoking thread did not finish"
    return committed_at[0], len(tokens), refusals


def _issued(grant) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(grant=grant, action=AuditEvent.Action.TOKEN_ISSUED, purpose="race")


STOPS = {
    "revoke": (lambda grant: grant_revoke(grant=grant, actor=Actor.system("test")), "revoked"),
    "kill switch": (
        lambda grant: kill_switch_set(engaged=True, actor=Actor.staff(1), reason="race test"),
        "issuance_suspended",
    ),
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", STOPS)
def test_no_token_is_issued_by_a_statement_that_started_after_issuance_was_stopped(
    postgres_only, consented_grant, service_actor, stop
) -> None:
    stop_issuance, refusal = STOPS[stop]
    committed_at, tokens, refusals = _race(
        consented_grant, service_actor, lambda: stop_issuance(consented_grant)
    )
    # Every token that left has its audit row, stamped with the start of the statement that issued it.
    assert tokens > REQUESTERS and _issued(consented_grant).count() == tokens + 1
    assert refusals and set(refusals) == {refusal}
    assert not _issued(consented_grant).filter(at__gte=committed_at).exists()
