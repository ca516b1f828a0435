"""Single flight across connections: N callers missing the cache cause one refresh."""

from __future__ import annotations

import pytest

from tests.fixtures.concurrency import run_concurrently
from tokens.broker import access_token_get

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
