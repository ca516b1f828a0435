"""The renewal engine: keep every grant's refresh token alive, classify what fails, tell who must act.

1. `renewal_sweep` (beat, every RENEWAL_SWEEP_MINUTES) picks at most RENEWAL_SWEEP_CAP grants whose
   last redemption is older than RENEWAL_INTERVAL_DAYS, stalest first, and enqueues one task per
   grant (its id only) with a random countdown over RENEWAL_SWEEP_SPREAD_SECONDS, after commit.
   A cache lock keeps two sweeps from overlapping; a lease on each grant keeps later sweeps from
   enqueueing it again while its task is still queued.
2. `grant_renew` (the task's body, and the command's) takes the grant's row lock without waiting
   (another worker holding it is already doing the work), re-checks that the grant is still due,
   and redeems the refresh token through `broker.grant_redeem_locked`, the one refresh code path.
   A redelivered or duplicate task for a grant already renewed therefore does nothing.
3. Failures, by class (tokens/issuance/failures.py): transient ones leave the grant active and set
   `next_attempt_at` from capped exponential backoff, never before the provider's Retry-After;
   partner ones move the grant to needs_renewal and e-mail the partner once (the vault does);
   operator ones (the application's own credential) raise one pausing alert for the application
   (the vault does) and touch no grant: the sweep skips the application's grants and sends one
   probe per RENEWAL_PROBE_MINUTES instead (tokens/renewal/probes.py); the first success closes the alert.
   Attention ones (an unknown code) mark only that grant needs_attention, back it off like a
   transient failure, and open an alert that pauses nothing.
4. `policy_expiry_sweep` (beat, daily) marks grants near their policy expiry as expiring, e-mails
   the partner RENEWAL_EXPIRY_WARNING_DAYS before (once per threshold), and expires lapsed grants.
"""

from __future__ import annotations

import enum
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from tokens.audit import Actor
from tokens.issuance.broker import grant_keepalive_locked
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import IssuedTokens
from tokens.issuance.vault import grant_expire, grant_mark_expiring
from tokens.metrics import SWEEP_SECONDS
from tokens.models import ConsentGrant, OperatorAlert
from tokens.renewal.liveness import sweep_heartbeat_record
from tokens.renewal.notifications import expiry_condition, notification_send_once

RENEWAL_ACTOR = Actor.system("renewal")
SWEEP_LOCK_KEY = "renewal:sweep:lock"
# Longer than a sweep of RENEWAL_SWEEP_CAP ids takes; a crashed sweep frees it by expiring.
SWEEP_LOCK_SECONDS = 120
# Grants leased and published per transaction: bounds memory and the time rows stay locked.
SWEEP_BATCH = 1000
State = ConsentGrant.State


class Outcome(enum.StrEnum):
    RENEWED = "renewed"
    NOT_DUE = "not_due"  # renewed meanwhile, ended, or backing off: a redelivery lands here
    LOCKED = "locked"  # another worker holds the grant's row lock and is doing the work
    MISSING = "missing"
    TRANSIENT = "transient"
    NEEDS_RENEWAL = "needs_renewal"
    NEEDS_ATTENTION = "needs_attention"
    OPERATOR = "operator"


@dataclass(frozen=True)
class GrantRenewal:
    grant_id: str
    outcome: Outcome
    failure_code: str = ""
    retry_in: int | None = None  # seconds until the next attempt, for transient failures


@dataclass
class SweepReport:
    grant_ids: list[str] = field(default_factory=list)
    overlapped: bool = False  # another sweep held the lock; this one did nothing
    dry_run: bool = False


@dataclass
class ExpiryReport:
    expired: int = 0
    marked_expiring: int = 0
    notified: int = 0


def _renewal_interval() -> timedelta:
    return timedelta(days=settings.RENEWAL_INTERVAL_DAYS)


def grants_due_list(
    *,
    now: datetime,
    partner_tenant_id: str | None = None,
    include_not_due: bool = False,
    include_paused: bool = False,
) -> QuerySet[ConsentGrant]:
    """Grants to redeem now, stalest first. `include_not_due` drops the interval test (the
    command's --all) but still honours backoff; `include_paused` drops the operator pause (the
    probe's choice of grant)."""
    open_alert = OperatorAlert.objects.filter(
        application=OuterRef("application"), pauses=True, resolved_at=None
    )
    grants = (
        ConsentGrant.objects.filter(
            state__in=ConsentGrant.ISSUABLE_STATES,
            refresh_token__isnull=False,
            policy_expires_at__gt=now,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by(F("last_refreshed_at").asc(nulls_first=True), "pk")
    )
    if not include_paused:
        # A broken application credential fails every grant alike: only the probe asks.
        grants = grants.exclude(Exists(open_alert))
    if not include_not_due:
        grants = grants.filter(
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lte=now - _renewal_interval())
        )
    if partner_tenant_id is not None:
        grants = grants.filter(partner__tenant_id=partner_tenant_id)
    return grants


def _lease_batch(due: QuerySet[ConsentGrant], *, size: int, until: datetime) -> list[str]:
    """Lease up to `size` due grants in one statement and return their ids. One UPDATE with the
    selection as its subquery: no id list travels to the database and back (an `IN (<100,000
    literals>)` took 3.7 s to parse and plan). Rows another sweep or worker holds are skipped."""
    selection, params = (
        due.select_for_update(skip_locked=True, of=("self",)).values("pk")[:size].query.sql_with_params()
    )
    table = ConsentGrant._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET renewal_enqueued_until = %s WHERE id IN ({selection}) RETURNING id",  # noqa: S608 - the ORM's own SQL
            [
                ConsentGrant._meta.get_field("renewal_enqueued_until").get_db_prep_value(until, connection),
                *params,
            ],
        )
        return [str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()]


def _publish(grant_ids: list[str], *, spread: int) -> None:
    """One producer for the batch, its messages pipelined to Redis (kombu's Producer.batch): one
    round trip per SWEEP_BATCH messages instead of one per message (4.6 ms each on a loaded host,
    bench/RESULTS.md). A failed flush raises: the leases stand and the grants are enqueued again
    once they lapse, as for any lost task."""
    from tokens.tasks import grant_renew_task  # tasks import this module

    with grant_renew_task.app.producer_or_acquire() as producer, producer.batch(max_size=SWEEP_BATCH):
        for grant_id in grant_ids:
            countdown = random.uniform(0, spread)  # noqa: S311 - jitter, not a secret
            grant_renew_task.apply_async(args=(grant_id,), countdown=countdown, producer=producer)


def renewal_sweep(
    *, now: datetime | None = None, cap: int | None = None, dry_run: bool = False
) -> SweepReport:
    """Enqueue one renewal task per due grant, at most `cap`, spread with jitter. Works in batches
    of SWEEP_BATCH: each batch's leases commit before its tasks are published, so a worker never
    sees an id first, and memory and transaction length stay bounded whatever the backlog."""
    started = time.perf_counter()
    now = now or timezone.now()
    cap = settings.RENEWAL_SWEEP_CAP if cap is None else cap
    due = grants_due_list(now=now).filter(
        Q(renewal_enqueued_until__isnull=True) | Q(renewal_enqueued_until__lte=now)
    )
    if dry_run:
        return SweepReport([str(pk) for pk in due.values_list("pk", flat=True)[:cap]], dry_run=True)
    owner = uuid.uuid4().hex
    if not cache.add(SWEEP_LOCK_KEY, owner, SWEEP_LOCK_SECONDS):
        return SweepReport(overlapped=True)
    report = SweepReport()
    try:
        spread = settings.RENEWAL_SWEEP_SPREAD_SECONDS
        until = now + timedelta(seconds=spread + settings.RENEWAL_LEASE_SECONDS)
        # A leased grant is no longer due (its lease ends after `now`): each batch finds the next ones.
        while len(report.grant_ids) < cap:
            with transaction.atomic():
                ids = _lease_batch(due, size=min(SWEEP_BATCH, cap - len(report.grant_ids)), until=until)
                if ids:
                    transaction.on_commit(partial(_publish, ids, spread=spread))
            if not ids:
                break
            report.grant_ids += ids
    finally:
        if cache.get(SWEEP_LOCK_KEY) == owner:
            cache.delete(SWEEP_LOCK_KEY)
    SWEEP_SECONDS.observe(time.perf_counter() - started)
    sweep_heartbeat_record()  # beat liveness (health page, /healthz/renewal, metrics)
    return report


def _is_due(grant: ConsentGrant, *, now: datetime, force: bool) -> bool:
    if not grant.is_issuable or grant.refresh_token is None or grant.policy_expires_at <= now:
        return False
    if grant.failed_at is not None and grant.next_attempt_at is not None and grant.next_attempt_at > now:
        return False  # backing off after a transient failure: never before Retry-After
    if force or grant.last_refreshed_at is None:
        return True
    return grant.last_refreshed_at <= now - _renewal_interval()


def retry_delay(*, failure_count: int, retry_after: int | None) -> int:
    """Seconds until the next attempt: exponential in the failure count, capped, with jitter over
    the upper half (grants that failed together do not retry together), and never less than the
    provider's Retry-After, even above the cap."""
    ceiling = min(
        settings.RENEWAL_RETRY_MAX_SECONDS,
        settings.RENEWAL_RETRY_BASE_SECONDS * 2 ** max(0, failure_count - 1),
    )
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
    return math.ceil(max(delay, retry_after or 0))


def _failure_handle(grant: ConsentGrant, failure: Failure, *, now: datetime) -> GrantRenewal:
    grant_id = str(grant.pk)
    if failure.failure_class in (FailureClass.TRANSIENT, FailureClass.ATTENTION):
        delay = retry_delay(failure_count=grant.failure_count, retry_after=failure.retry_after)
        ConsentGrant.objects.filter(pk=grant.pk).update(next_attempt_at=now + timedelta(seconds=delay))
        if failure.failure_class is FailureClass.ATTENTION:
            return GrantRenewal(grant_id, Outcome.NEEDS_ATTENTION, failure.code)
        return GrantRenewal(grant_id, Outcome.TRANSIENT, failure.code, retry_in=delay)
    if failure.failure_class is FailureClass.PARTNER:
        return GrantRenewal(grant_id, Outcome.NEEDS_RENEWAL, failure.code)
    # Operator class (the vault raised the alert and left the grant alone). The customer class
    # cannot occur: renewal redeems in the partner's own tenant. The task is done: its lease is
    # released, so the sweep right after the probe that closes the alert enqueues it again
    # instead of waiting RENEWAL_LEASE_SECONDS.
    ConsentGrant.objects.filter(pk=grant.pk).update(renewal_enqueued_until=None)
    return GrantRenewal(grant_id, Outcome.OPERATOR, failure.code)


def grant_renew(*, grant_id: str, actor: Actor = RENEWAL_ACTOR, force: bool = False) -> GrantRenewal:
    """Redeem one grant's refresh token if it is still due; idempotent, safe to run twice."""
    now = timezone.now()
    with transaction.atomic():
        try:
            grant = (
                # The application is needed to redeem; the partner only if the partner must be
                # e-mailed or the application's authority tenant is a specific one
                # (broker.redemption_tenant), rare paths that can afford their own query.
                ConsentGrant.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("application")
                .get(pk=grant_id)
            )
        except ConsentGrant.DoesNotExist:
            held = ConsentGrant.objects.filter(pk=grant_id).exists()
            return GrantRenewal(grant_id, Outcome.LOCKED if held else Outcome.MISSING)
        if not _is_due(grant, now=now, force=force):
            return GrantRenewal(grant_id, Outcome.NOT_DUE)
        outcome = grant_keepalive_locked(
            locked_grant=grant, actor=actor, detail="refresh token redeemed to keep the grant alive"
        )
        if isinstance(outcome, IssuedTokens):
            return GrantRenewal(grant_id, Outcome.RENEWED)
        return _failure_handle(grant, outcome, now=now)


def _expiry_threshold(remaining: timedelta) -> int | None:
    """The most urgent warning threshold (in days) the remaining time falls within."""
    within = [days for days in settings.RENEWAL_EXPIRY_WARNING_DAYS if remaining <= timedelta(days=days)]
    return min(within) if within else None


def policy_expiry_sweep(*, now: datetime | None = None, actor: Actor = RENEWAL_ACTOR) -> ExpiryReport:
    """Expire grants whose policy lapsed (token material destroyed, audited); mark the ones near
    expiry as expiring and e-mail their partner once per warning threshold."""
    now = now or timezone.now()
    report = ExpiryReport()
    ended = (State.REVOKED, State.EXPIRED)
    lapsed = ConsentGrant.objects.exclude(state__in=ended).filter(policy_expires_at__lte=now)
    for grant_id in lapsed.values_list("pk", flat=True):
        with transaction.atomic():
            grant = (
                ConsentGrant.objects.select_for_update(of=("self",))
                .select_related("partner", "application")
                .get(pk=grant_id)
            )
            if grant.state not in ended and grant.policy_expires_at <= now:
                grant_expire(locked_grant=grant, actor=actor)
                report.expired += 1
    horizon = now + timedelta(days=max(settings.RENEWAL_EXPIRY_WARNING_DAYS, default=0))
    near = ConsentGrant.objects.filter(
        state__in=ConsentGrant.ISSUABLE_STATES, policy_expires_at__gt=now, policy_expires_at__lte=horizon
    )
    for grant_id in near.values_list("pk", flat=True):
        with transaction.atomic():
            grant = (
                ConsentGrant.objects.select_for_update(of=("self",))
                .select_related("partner", "application")
                .get(pk=grant_id)
            )
            threshold = _expiry_threshold(grant.policy_expires_at - now)
            if not grant.is_issuable or threshold is None:
                continue  # renewed or revoked since the list was read
            if grant.state == State.ACTIVE:
                grant_mark_expiring(locked_grant=grant, actor=actor)
                report.marked_expiring += 1
            if notification_send_once(grant=grant, condition=expiry_condition(threshold)):
                report.notified += 1
    return report
