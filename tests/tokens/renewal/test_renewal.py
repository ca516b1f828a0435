"""The renewal engine's services against the sandbox, in the test process (no worker): due
selection, the sweep's cap, lease and lock, idempotent renewal, every failure class, notifications
once, policy expiry, and the renew_grants command. tests/tokens/renewal/test_renewal_worker.py runs the
same services in real Celery workers."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from sandbox import demo
from tests.fixtures.renewal import sandbox_refreshes
from tokens.issuance.identity import msal_apps_clear
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent, ConsentGrant, Notification, OperatorAlert
from tokens.renewal import sweep as renewal
from tokens.renewal.sweep import (
    Outcome,
    grant_renew,
    grants_due_list,
    policy_expiry_sweep,
    renewal_sweep,
    retry_delay,
)

pytestmark = pytest.mark.django_db
State = ConsentGrant.State


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[tuple[str, ...], float]]:
    """What the sweep publishes, instead of publishing it."""
    from tokens.tasks import grant_renew_task

    calls: list[tuple[tuple[str, ...], float]] = []
    monkeypatch.setattr(
        grant_renew_task, "apply_async", lambda args, countdown, **options: calls.append((args, countdown))
    )
    return calls


def test_a_due_grant_is_renewed_through_the_broker_path_and_audited(stale_grant, panel_settings) -> None:
    before = stale_grant.refresh_token
    result = grant_renew(grant_id=str(stale_grant.pk))
    assert result.outcome is Outcome.RENEWED
    stale_grant.refresh_from_db()
    assert stale_grant.refresh_token != before
    assert timezone.now() - stale_grant.last_refreshed_at < timedelta(minutes=1)
    assert stale_grant.state == State.ACTIVE
    event = AuditEvent.objects.get(action=AuditEvent.Action.REFRESHED)
    assert event.actor_id == "renewal" and event.audience == "partner_center"
    assert sandbox_refreshes(panel_settings) == 1


def test_a_redelivered_task_for_a_renewed_grant_does_nothing(stale_grant, panel_settings) -> None:
    assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.RENEWED
    assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.NOT_DUE
    assert sandbox_refreshes(panel_settings) == 1


def test_a_grant_not_due_is_not_redeemed_unless_forced(stale_grant, panel_settings) -> None:
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(last_refreshed_at=timezone.now())
    assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.NOT_DUE
    assert sandbox_refreshes(panel_settings) == 0
    assert grant_renew(grant_id=str(stale_grant.pk), force=True).outcome is Outcome.RENEWED


def test_an_unknown_grant_is_missing() -> None:
    assert grant_renew(grant_id="00000000-0000-0000-0000-000000000000").outcome is Outcome.MISSING


def test_due_selection_skips_recent_ended_lapsed_backing_off_and_paused_grants(stale_grant) -> None:
    now = timezone.now()
    assert list(grants_due_list(now=now)) == [stale_grant]
    assert list(grants_due_list(now=now - timedelta(days=2))) == []  # refreshed 6 days before then
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(next_attempt_at=now + timedelta(minutes=1))
    assert list(grants_due_list(now=now)) == []
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(next_attempt_at=None)
    # An alert that does not pause (an unknown code) leaves the grant due; a credential alert not.
    other = OperatorAlert.objects.create(application=stale_grant.application, code="AADSTS1", message="x")
    assert list(grants_due_list(now=now)) == [stale_grant]
    other.delete()
    alert = OperatorAlert.objects.create(
        application=stale_grant.application, code="AADSTS7000222", message="x", pauses=True
    )
    assert list(grants_due_list(now=now)) == []
    assert list(grants_due_list(now=now, include_paused=True)) == [stale_grant]
    alert.resolved_at = now
    alert.save()
    assert list(grants_due_list(now=now)) == [stale_grant]
    assert list(grants_due_list(now=stale_grant.policy_expires_at)) == []
    grant_revoke(grant=stale_grant, actor=renewal.RENEWAL_ACTOR)
    assert list(grants_due_list(now=now)) == []


def test_the_sweep_enqueues_ids_only_after_commit_with_jitter_and_a_lease(
    stale_grant, enqueued, django_capture_on_commit_callbacks, settings
) -> None:
    settings.RENEWAL_SWEEP_SPREAD_SECONDS = 60
    with django_capture_on_commit_callbacks() as callbacks:
        report = renewal_sweep()
        assert enqueued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert report.grant_ids == [str(stale_grant.pk)]
    ((args, countdown),) = enqueued
    assert args == (str(stale_grant.pk),) and 0 <= countdown <= 60
    # While its task is queued, later sweeps leave the grant alone.
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_sweep().grant_ids == []
    assert len(enqueued) == 1
    lease = ConsentGrant.objects.get().renewal_enqueued_until
    assert lease is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_sweep(now=lease + timedelta(seconds=1)).grant_ids == [str(stale_grant.pk)]


def test_the_sweep_is_capped_and_does_not_overlap_itself(
    stale_grant, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_sweep(cap=0).grant_ids == []
        cache.add(renewal.SWEEP_LOCK_KEY, "another sweep", 60)
        assert renewal_sweep().overlapped
        cache.delete(renewal.SWEEP_LOCK_KEY)
        assert renewal_sweep(dry_run=True).grant_ids == [str(stale_grant.pk)]
    assert enqueued == []
    assert ConsentGrant.objects.get().renewal_enqueued_until is None  # a dry run writes nothing


def test_retry_delay_is_capped_exponential_and_never_before_retry_after(settings) -> None:
    settings.RENEWAL_RETRY_BASE_SECONDS = 10
    settings.RENEWAL_RETRY_MAX_SECONDS = 100
    assert 5 <= retry_delay(failure_count=1, retry_after=None) <= 10
    assert 20 <= retry_delay(failure_count=3, retry_after=None) <= 40
    assert 50 <= retry_delay(failure_count=30, retry_after=None) <= 100
    assert retry_delay(failure_count=1, retry_after=60) >= 60
    assert retry_delay(failure_count=1, retry_after=600) == 600  # above the cap: still honoured


@pytest.mark.parametrize(
    ("fault", "spec", "code"),
    [
        ("http_500", {}, "HTTP_500"),
        ("http_503", {}, "HTTP_503"),
        ("http_429", {"retry_after": 120}, "HTTP_429"),
        ("drop", {}, "CONNECTION"),
        ("timeout", {}, "TIMEOUT"),
    ],
)
def test_transient_failures_keep_the_grant_active_and_back_off(
    stale_grant, panel_settings, settings, fault, spec, code
) -> None:
    settings.IDENTITY_HTTP_TIMEOUT = 1
    msal_apps_clear()
    panel_settings.control.add_fault(fault, count=1, **spec)
    started = timezone.now()
    result = grant_renew(grant_id=str(stale_grant.pk))
    assert result.outcome is Outcome.TRANSIENT and result.failure_code == code
    assert result.retry_in is not None
    stale_grant.refresh_from_db()
    assert stale_grant.state == State.ACTIVE
    assert stale_grant.failure_count == 1 and stale_grant.failure_code == code
    assert stale_grant.next_attempt_at >= started + timedelta(seconds=result.retry_in)
    if fault == "http_429":
        assert result.retry_in >= 120
    # Backing off: neither the sweep nor a stray task asks again before next_attempt_at.
    before = sandbox_refreshes(panel_settings)
    assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.NOT_DUE
    assert list(grants_due_list(now=timezone.now())) == []
    assert sandbox_refreshes(panel_settings) == before
    # Once it is time, the next attempt renews and clears the failure.
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(next_attempt_at=timezone.now())
    assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.RENEWED
    stale_grant.refresh_from_db()
    assert stale_grant.failure_count == 0 and stale_grant.next_attempt_at is None


def test_repeated_transient_failures_back_off_longer(stale_grant, panel_settings, settings) -> None:
    settings.RENEWAL_RETRY_BASE_SECONDS = 10
    panel_settings.control.add_fault("http_503", count=3)
    delays: list[int] = []
    for _ in range(3):
        delays.append(grant_renew(grant_id=str(stale_grant.pk)).retry_in or 0)
        ConsentGrant.objects.filter(pk=stale_grant.pk).update(next_attempt_at=timezone.now())
    assert 5 <= delays[0] <= 10 and 20 <= delays[2] <= 40
    assert ConsentGrant.objects.get().failure_count == 3


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda c: c.revoke_sessions(demo.ADMIN_AGENT), "AADSTS50173"),
        (lambda c: c.expire_refresh_tokens(user=demo.ADMIN_AGENT), "AADSTS700082"),
        (lambda c: c.remove_consent(demo.CONTOSO, demo.CLIENT_ID), "AADSTS65001"),
        (lambda c: c.tenant_policy(demo.CONTOSO, block=True), "AADSTS53003"),
    ],
    ids=["sessions revoked", "refresh token expired", "consent removed", "conditional access"],
)
def test_partner_failures_need_renewal_and_email_the_partner_exactly_once(
    stale_grant, panel_settings, django_capture_on_commit_callbacks, settings, arrange, code
) -> None:
    settings.SITE_URL = "https://panel.example.test"
    arrange(panel_settings.control)
    with django_capture_on_commit_callbacks(execute=True):
        result = grant_renew(grant_id=str(stale_grant.pk))
        assert grant_renew(grant_id=str(stale_grant.pk), force=True).outcome is Outcome.NOT_DUE
    assert result.outcome is Outcome.NEEDS_RENEWAL and result.failure_code == code
    stale_grant.refresh_from_db()
    assert stale_grant.state == State.NEEDS_RENEWAL and stale_grant.failure_class == "partner"
    (message,) = mail.outbox
    assert message.to == [demo.ADMIN_AGENT]
    assert f"https://panel.example.test/dashboard/grants/{stale_grant.pk}/renew/" in message.body
    assert stale_grant.refresh_token not in message.body
    assert Notification.objects.get().condition == "needs_renewal"


def test_an_expired_app_secret_alerts_the_operator_once_and_changes_no_grant(
    stale_grant, panel_settings, django_capture_on_commit_callbacks, settings
) -> None:
    settings.OPERATOR_ALERT_EMAILS = ["ops@example.invalid"]
    panel_settings.control.expire_secret(demo.CLIENT_ID)
    before = ConsentGrant.objects.values().get()
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.OPERATOR
        assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.OPERATOR
    after = ConsentGrant.objects.values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    alert = OperatorAlert.objects.get()
    assert alert.code == "AADSTS7000222" and alert.occurrences == 2
    (message,) = mail.outbox
    assert message.to == ["ops@example.invalid"]
    # The sweep stops asking for this application until staff resolve the alert.
    assert list(grants_due_list(now=timezone.now())) == []


def test_policy_expiry_warns_14_and_3_days_before_once_each_then_expires(
    consented_grant, django_capture_on_commit_callbacks
) -> None:
    now = timezone.now()
    expires = consented_grant.policy_expires_at
    with django_capture_on_commit_callbacks(execute=True):
        assert policy_expiry_sweep(now=expires - timedelta(days=20)).notified == 0
        first = policy_expiry_sweep(now=expires - timedelta(days=13))
        again = policy_expiry_sweep(now=expires - timedelta(days=12))
        second = policy_expiry_sweep(now=expires - timedelta(days=2))
        policy_expiry_sweep(now=expires - timedelta(days=1))
    assert (first.marked_expiring, first.notified, again.notified, second.notified) == (1, 1, 0, 1)
    consented_grant.refresh_from_db()
    assert consented_grant.state == State.EXPIRING and consented_grant.is_issuable
    assert [m.to for m in mail.outbox] == [[demo.ADMIN_AGENT]] * 2
    assert "/renew/" in mail.outbox[0].body
    assert sorted(Notification.objects.values_list("condition", flat=True)) == [
        "expires_in_14_days",
        "expires_in_3_days",
    ]
    generation = consented_grant.generation
    assert policy_expiry_sweep(now=expires + timedelta(seconds=1)).expired == 1
    consented_grant.refresh_from_db()
    assert consented_grant.state == State.EXPIRED and consented_grant.refresh_token is None
    assert consented_grant.generation == generation + 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRED, grant=consented_grant).count() == 1
    assert policy_expiry_sweep(now=expires + timedelta(days=1)).expired == 0
    assert now < expires


def test_a_needs_renewal_grant_also_expires_when_its_policy_lapses(consented_grant) -> None:
    ConsentGrant.objects.filter(pk=consented_grant.pk).update(state=State.NEEDS_RENEWAL)
    assert policy_expiry_sweep(now=consented_grant.policy_expires_at).expired == 1
    assert ConsentGrant.objects.get().refresh_token is None


def test_the_command_lists_renews_and_targets_one_partner(stale_grant, panel_settings) -> None:
    out = StringIO()
    call_command("renew_grants", "--due", "--dry-run", stdout=out)
    assert f"would renew {stale_grant.pk}" in out.getvalue()
    assert sandbox_refreshes(panel_settings) == 0
    call_command("renew_grants", stdout=out)
    assert "renewed 1" in out.getvalue()
    call_command("renew_grants", "--partner", demo.FABRIKAM, stdout=out)
    assert sandbox_refreshes(panel_settings) == 1
    call_command("renew_grants", "--partner", demo.CONTOSO, stdout=out)
    call_command("renew_grants", "--all", stdout=out)
    assert sandbox_refreshes(panel_settings) == 3
    assert AuditEvent.objects.filter(actor_id="renew_grants command").count() == 3


def test_the_tasks_are_thin_wrappers_and_a_transient_failure_schedules_a_retry(
    stale_grant, panel_settings, monkeypatch
) -> None:
    from tokens.tasks import grant_renew_task, policy_expiry_sweep_task

    retries: list[int] = []

    def retry(countdown: int) -> Exception:
        retries.append(countdown)
        return RuntimeError("retry")

    monkeypatch.setattr(grant_renew_task, "retry", retry)
    panel_settings.control.add_fault("http_429", count=1, retry_after=5)
    with pytest.raises(RuntimeError, match="retry"):
        grant_renew_task.run(str(stale_grant.pk))
    assert retries and retries[0] >= 5
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(next_attempt_at=timezone.now())
    assert grant_renew_task.run(str(stale_grant.pk)) == "renewed"
    assert policy_expiry_sweep_task.run() == 0


def test_the_sweep_leases_in_batches_each_grant_once(
    application, enqueued, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    """Batches of SWEEP_BATCH: every due grant is leased and published once, up to the cap,
    and the next sweep takes the rest."""
    from tests.fixtures.staff import grant_make, partner_make

    monkeypatch.setattr(renewal, "SWEEP_BATCH", 2)
    stale = timezone.now() - timedelta(days=8)
    grants = [
        grant_make(
            partner=partner_make(tenant_id=f"00000000-0000-4000-8000-{i:012d}", name=f"P{i}"),
            application=application,
            last_refreshed_at=stale,
        )
        for i in range(5)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        first = renewal_sweep(cap=4).grant_ids
    assert len(first) == 4 == len(set(first))
    assert sorted(args[0] for args, _ in enqueued) == sorted(first)
    assert ConsentGrant.objects.filter(renewal_enqueued_until__isnull=False).count() == 4
    with django_capture_on_commit_callbacks(execute=True):
        second = renewal_sweep(cap=4).grant_ids
    assert sorted(first + second) == sorted(str(grant.pk) for grant in grants)
    assert len(enqueued) == 5
