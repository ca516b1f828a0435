"""The renewal engine in real Celery workers (subprocesses) on PostgreSQL and Redis, against a
sandbox holding many partner tenants: beat-driven sweeps, faults during a sweep, partner and
operator failures, kill -9 mid-sweep, two workers on one sweep, and what goes over the broker.

Skipped with a reason unless DATABASE_URL is PostgreSQL and the broker and cache are Redis.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from functools import partial

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from sandbox import demo
from sandbox.bulk import bulk_partners, bulk_refresh_tokens
from tests.fixtures.renewal import bulk_grants_create, sandbox_application, wait_for
from tokens.credentials.applications import credential_certificate_add
from tokens.models import AuditEvent, ConsentGrant, Notification, OperatorAlert
from tokens.renewal.sweep import renewal_sweep
from tokens.tasks import grant_renew_task, renewal_sweep_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
State = ConsentGrant.State


def _refreshes(stack) -> int:
    return stack.sandbox.counters()["token_requests"]["by_grant_type"].get("refresh_token", 0)


def _refreshes_over(stack, floor: int) -> bool:
    return _refreshes(stack) > floor


def _renewed(grants) -> int:
    ids = [g.pk for g in grants]
    return ConsentGrant.objects.filter(
        pk__in=ids, failure_count=0, last_refreshed_at__gt=grants[0].consented_at
    ).count()


def _all_renewed(grants) -> bool:
    return _renewed(grants) == len(grants)


def _states(grants) -> set[str]:
    return set(ConsentGrant.objects.filter(pk__in=[g.pk for g in grants]).values_list("state", flat=True))


def test_beat_and_a_worker_renew_due_grants_once_each(worker_stack, due_grants) -> None:
    grants = due_grants(12)
    worker_stack.worker()
    worker_stack.beat(extra_env={"RENEWAL_SWEEP_MINUTES": "0.05"})  # a sweep every 3 s
    wait_for(lambda: _all_renewed(grants), timeout=60, message="every grant renewed by beat + worker")
    time.sleep(4)  # later sweeps find nothing due
    assert _refreshes(worker_stack) == 12
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REFRESHED, actor_id="renewal").count() == 12
    assert _states(grants) == {State.ACTIVE}


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("http_500", {"count": 10}),
        ("http_503", {"count": 10}),
        ("timeout", {"count": 6, "delay_seconds": 5}),
    ],
)
def test_faults_during_a_sweep_leave_every_grant_active_and_all_are_renewed(
    worker_stack, due_grants, kind, spec
) -> None:
    grants = due_grants(10)
    worker_stack.sandbox.add_fault(kind, **spec)
    worker_stack.worker()
    renewal_sweep()
    wait_for(lambda: _all_renewed(grants), timeout=90, message=f"every grant renewed after {kind}")
    assert _states(grants) == {State.ACTIVE}
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REFRESH_FAILED).count() == spec["count"]
    assert not Notification.objects.exists() and not OperatorAlert.objects.exists()


def test_no_retry_before_retry_after(worker_stack, due_grants) -> None:
    grants = due_grants(8)
    worker_stack.sandbox.add_fault("http_429", count=8, retry_after=6)
    worker_stack.worker()
    started = time.monotonic()
    renewal_sweep()
    wait_for(lambda: _refreshes(worker_stack) >= 8, timeout=30, message="the first attempts")
    while time.monotonic() - started < 5:  # inside Retry-After: nothing more reaches the provider
        assert _refreshes(worker_stack) == 8
        time.sleep(0.25)
    wait_for(lambda: _all_renewed(grants), timeout=60, message="every grant renewed after Retry-After")
    assert _refreshes(worker_stack) == 16
    assert _states(grants) == {State.ACTIVE}


def test_revoked_sessions_need_renewal_and_send_exactly_one_email(worker_stack, due_grants) -> None:
    grants = due_grants(4)
    victim = grants[0]
    worker_stack.sandbox.revoke_sessions(victim.consented_by_upn)
    worker_stack.worker()
    renewal_sweep()
    wait_for(lambda: _renewed(grants) == 3, timeout=30, message="the other grants renewed")
    wait_for(
        lambda: ConsentGrant.objects.get(pk=victim.pk).state == State.NEEDS_RENEWAL,
        timeout=30,
        message="the revoked grant flagged",
    )
    # Another sweep, and a stray task for the flagged grant, change nothing and send nothing more.
    renewal_sweep()
    grant_renew_task.delay(str(victim.pk))
    time.sleep(2)
    mails = worker_stack.mails()
    assert len(mails) == 1
    assert f"To: {victim.consented_by_upn}" in mails[0]
    assert f"/dashboard/grants/{victim.pk}/renew/" in mails[0]
    assert Notification.objects.get().grant_id == victim.pk


def test_an_expired_app_secret_raises_one_alert_and_changes_no_grant(worker_stack, due_grants) -> None:
    due_grants(6)
    before = list(ConsentGrant.objects.order_by("pk").values())
    worker_stack.sandbox.expire_secret(demo.CLIENT_ID)
    worker_stack.worker()
    renewal_sweep()
    wait_for(
        lambda: AuditEvent.objects.filter(action=AuditEvent.Action.REFRESH_FAILED).count() == 6,
        timeout=30,
        message="every grant attempted",
    )
    time.sleep(1)
    after = list(ConsentGrant.objects.order_by("pk").values())
    drop = {"updated_at", "renewal_enqueued_until"}
    assert [{k: v for k, v in g.items() if k not in drop} for g in after] == [
        {k: v for k, v in g.items() if k not in drop} for g in before
    ]
    alert = OperatorAlert.objects.get()
    assert alert.code == "AADSTS7000222" and alert.occurrences == 6 and alert.pauses
    assert len(worker_stack.mails()) == 1 and "To: ops@example.invalid" in worker_stack.mails()[0]
    assert renewal_sweep().grant_ids == []  # paused: only probes ask until a redemption succeeds


def test_a_broken_secret_is_probed_once_per_interval_and_a_new_credential_resumes_every_grant(
    worker_stack, tmp_path
) -> None:
    """Beat sweeps every 3 s, probes at most every 6 s. With the secret expired: one alert, no
    grant changed, probes bounded by the interval (sandbox counters). The operator adds the app's
    certificate: within one sweep every due grant renews and the alert closes, no staff action."""
    # Due by the panel's clock only: the sandbox's clock stays with the real one, since a client
    # assertion is signed with the real time (an advanced sandbox clock would refuse it, 700024).
    partners = bulk_partners(8)
    grants = bulk_grants_create(
        application=sandbox_application(worker_stack.sandbox.base_url),
        partners=partners,
        refresh_tokens=bulk_refresh_tokens(worker_stack.sandbox, partners),
        last_refreshed_at=timezone.now() - timedelta(days=8),
    )
    before = list(ConsentGrant.objects.order_by("pk").values())
    worker_stack.sandbox.expire_secret(demo.CLIENT_ID)
    # The worker runs the sweep task (and so the probes): it needs the probe interval too.
    beat_env = {"RENEWAL_SWEEP_MINUTES": "0.05", "RENEWAL_PROBE_MINUTES": "0.1"}
    renewal_sweep()  # the first sweep finds the broken secret
    worker_stack.worker(extra_env=beat_env)
    wait_for(lambda: OperatorAlert.objects.filter(pauses=True).exists(), timeout=30, message="the alert")
    wait_for(
        lambda: AuditEvent.objects.filter(action=AuditEvent.Action.REFRESH_FAILED).count() == 8,
        timeout=30,
        message="every task of the first sweep done",
    )
    worker_stack.sandbox.clear_counters()
    started = time.monotonic()
    worker_stack.beat(extra_env=beat_env)
    time.sleep(14)
    elapsed = time.monotonic() - started
    probes = _refreshes(worker_stack)
    assert 1 <= probes <= elapsed // 6 + 1, (probes, elapsed)
    drop = {"updated_at", "renewal_enqueued_until", "last_refreshed_at", "failure_count"}
    after = list(ConsentGrant.objects.order_by("pk").values())
    assert [{k: v for k, v in g.items() if k not in drop} for g in after] == [
        {k: v for k, v in g.items() if k not in drop} for g in before
    ]
    assert _renewed(grants) == 0 and OperatorAlert.objects.count() == 1
    pem = tmp_path / "app.pem"
    pem.write_text(demo.CERT_PATH.read_text() + demo.KEY_PATH.read_text())
    credential_certificate_add(application=grants[0].application, pem=pem.read_bytes())
    wait_for(lambda: _all_renewed(grants), timeout=40, message="every grant renewed after the fix")
    alert = OperatorAlert.objects.get()
    assert alert.resolved_at is not None and alert.resolved_by == "system:alerts"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ALERT_CLOSED).count() == 1
    assert _states(grants) == {State.ACTIVE}
    assert worker_stack.sandbox.client_assertions()  # the certificate served the renewals


def test_the_app_disabled_in_one_partners_tenant_needs_that_partner_and_the_others_renew(
    worker_stack, due_grants
) -> None:
    grants = due_grants(6)
    victim = grants[0]
    worker_stack.sandbox.service_principal(str(victim.partner.tenant_id), demo.CLIENT_ID, "disabled")
    worker_stack.worker()
    renewal_sweep()
    wait_for(lambda: _renewed(grants) == 5, timeout=30, message="every other partner renewed in that sweep")
    wait_for(
        lambda: ConsentGrant.objects.get(pk=victim.pk).state == State.NEEDS_RENEWAL,
        timeout=30,
        message="the partner's grant needs renewal",
    )
    time.sleep(1)
    assert not OperatorAlert.objects.exists()
    (mail,) = worker_stack.mails()
    assert f"To: {victim.consented_by_upn}" in mail and "enable it again" in mail
    assert ConsentGrant.objects.get(pk=victim.pk).failure_code == "AADSTS7000112"


def test_an_unknown_code_for_one_partner_needs_attention_and_pauses_nothing(worker_stack, due_grants) -> None:
    grants = due_grants(6)
    victim = grants[0]
    worker_stack.sandbox.add_fault(
        "aadsts", endpoint="token", code=4242424, error="server_misconfigured",
        tenant=str(victim.partner.tenant_id), seconds=120,
    )  # fmt: skip
    worker_stack.worker()
    renewal_sweep()
    wait_for(lambda: _renewed(grants) == 5, timeout=30, message="every other partner renewed in that sweep")
    wait_for(
        lambda: ConsentGrant.objects.get(pk=victim.pk).state == State.NEEDS_ATTENTION,
        timeout=30,
        message="the grant with the unknown code needs attention",
    )
    (alert,) = OperatorAlert.objects.all()
    assert alert.code == "AADSTS4242424" and not alert.pauses
    # Staff are told through the alert's e-mail; the partner, who has nothing to do, gets none.
    assert not [mail for mail in worker_stack.mails() if f"To: {victim.consented_by_upn}" in mail]
    assert ConsentGrant.objects.get(pk=victim.pk).failure_code == "AADSTS4242424"


def test_beat_records_each_sweep_and_health_reports_stale_when_beat_stops(
    worker_stack, client, settings
) -> None:
    settings.RENEWAL_SWEEP_MINUTES = 0.05  # what beat runs with below: stale after 6 s without a sweep
    worker_stack.worker()
    beat = worker_stack.beat(extra_env={"RENEWAL_SWEEP_MINUTES": "0.05"})
    wait_for(lambda: client.get("/healthz/renewal").status_code == 200, timeout=40, message="a sweep ran")
    first = client.get("/healthz/renewal").json()["last_sweep_at"]
    wait_for(
        lambda: client.get("/healthz/renewal").json()["last_sweep_at"] != first,
        timeout=20,
        message="the next sweep recorded",
    )
    beat.stop()
    wait_for(lambda: client.get("/healthz/renewal").status_code == 503, timeout=20, message="reported stale")
    assert client.get("/healthz/renewal").json()["status"] == "stale"


def test_kill_9_mid_sweep_loses_no_grant_and_redelivers(worker_stack, due_grants) -> None:
    """Ten rounds: sweep, kill -9 while renewals are in flight, finish. Odd rounds kill one pool
    process (the worker notices and, with reject_on_worker_lost, requeues its task at once); even
    rounds kill the whole worker and start another (its unacknowledged tasks come back from Redis
    after the visibility timeout)."""
    grants = due_grants(20)
    ids = [g.pk for g in grants]
    stale = ConsentGrant.objects.get(pk=ids[0]).last_refreshed_at
    worker_stack.sandbox.add_fault("latency", seconds=600, delay_seconds=0.25)
    env = {
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "CELERY_UNACKED_RESTORE_SECONDS": "1",
        # A round may kill the worker while it holds the restore mutex (seen on CI: three tasks
        # held back for the mutex's whole expiry).
        "CELERY_UNACKED_MUTEX_SECONDS": "2",
    }
    worker = worker_stack.worker(concurrency=3, extra_env=env)
    lost_requests = 0
    for round_ in range(10):
        ConsentGrant.objects.filter(pk__in=ids).update(last_refreshed_at=stale, renewal_enqueued_until=None)
        renewed_before = AuditEvent.objects.filter(action=AuditEvent.Action.REFRESHED).count()
        requests_before = _refreshes(worker_stack)
        renewal_sweep()
        wait_for(partial(_refreshes_over, worker_stack, requests_before + 2), timeout=30, message="in flight")
        if round_ % 2:
            os.kill(worker.children()[0], signal.SIGKILL)
        else:
            worker.kill()
            worker = worker_stack.worker(concurrency=3, extra_env=env)
        wait_for(lambda: _all_renewed(grants), timeout=60, message=f"round {round_}: every grant renewed")
        renewed = AuditEvent.objects.filter(action=AuditEvent.Action.REFRESHED).count() - renewed_before
        assert renewed == 20, f"round {round_}: each grant renewed exactly once"
        lost_requests += _refreshes(worker_stack) - requests_before - renewed
    assert _states(grants) == {State.ACTIVE}
    assert not ConsentGrant.objects.filter(pk__in=ids).exclude(failure_class="").exists()
    # Requests whose worker died before its commit were redone by the redelivered task.
    assert lost_requests >= 1


def test_two_workers_on_the_same_sweep_redeem_each_grant_once(worker_stack, due_grants) -> None:
    grants = due_grants(30)
    worker_stack.sandbox.add_fault("latency", seconds=600, delay_seconds=0.1)
    for name in ("a", "b"):
        worker_stack.worker(concurrency=4, name=name)
    # Two sweeps at once (the lock lets one enqueue), and every grant's task twice over, as if
    # two sweeps had both enqueued it: the row lock and the due check leave one redemption each.
    renewal_sweep_task.delay()
    renewal_sweep_task.delay()
    for grant in grants:
        grant_renew_task.delay(str(grant.pk))
        grant_renew_task.delay(str(grant.pk))
    wait_for(lambda: _all_renewed(grants), timeout=60, message="every grant renewed")
    time.sleep(2)
    assert _refreshes(worker_stack) == 30
    per_grant = (
        AuditEvent.objects.filter(action=AuditEvent.Action.REFRESHED)
        .values("grant")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    assert sorted(per_grant) == [1] * 30


def test_messages_on_the_broker_carry_ids_and_no_secret(worker_stack, due_grants) -> None:
    grants = due_grants(3)
    canaries = [g.refresh_token for g in grants] + [demo.CLIENT_SECRET, settings.FIELD_ENCRYPTION_KEYSET]
    published: list[str] = []

    def record(body, headers, **kwargs) -> None:
        published.append(repr((body, headers)))

    before_task_publish.connect(record, weak=False)
    try:
        renewal_sweep()
    finally:
        before_task_publish.disconnect(record)
    assert len(published) == 3
    # What sits in Redis, raw, before any worker takes it.
    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    stored = b"".join(raw.dump(key) or b"" for key in raw.keys("*"))
    assert stored
    for canary in canaries:
        assert canary.encode() not in stored
        assert all(canary not in message for message in published)
    assert all(str(g.pk) in "".join(published) for g in grants)


def _sessions_opened() -> int:
    """Connections ever opened to this database (PostgreSQL counts them as they are made)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_a_worker_keeps_its_database_connections_across_tasks(worker_stack, due_grants) -> None:
    # Celery's Django fixup closed every connection around every task, whatever
    # DATABASE_CONN_MAX_AGE said: one new PostgreSQL backend per grant renewed.
    grants = due_grants(20)
    before = _sessions_opened()
    worker_stack.worker(concurrency=2, extra_env={"DATABASE_CONN_MAX_AGE": "600"})
    renewal_sweep()
    wait_for(lambda: _all_renewed(grants), timeout=60, message="every grant renewed")
    opened = _sessions_opened() - before
    assert 1 <= opened <= 4, f"{opened} connections opened for 20 tasks on 2 pool processes"
