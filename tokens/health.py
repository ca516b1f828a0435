"""Numbers for the staff health page, each one aggregate query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tokens.failures import FailureClass
from tokens.models import AuditEvent, ConsentGrant, KillSwitch

# Written by the renewal engine after each sweep (an ISO 8601 string or a datetime).
LAST_SWEEP_CACHE_KEY = "renewal:last_sweep_at"
# The renewal engine's audit actor ids start with this, as Actor.system("renewal...").
RENEWAL_ACTOR_PREFIX = "renewal"


@dataclass(frozen=True)
class HealthSummary:
    grants_by_state: dict[str, int]
    expiring_7_days: int
    expiring_30_days: int
    failures_by_class_24h: dict[str, int]
    last_sweep_at: datetime | None
    global_kill_switch: KillSwitch | None


def last_sweep_at_get() -> datetime | None:
    """When the renewal sweep last finished: the sweep writes it to the cache; before the first
    sweep since the cache was emptied, the newest redemption by the renewal engine."""
    value = cache.get(LAST_SWEEP_CACHE_KEY)
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return parse_datetime(value)
    # Within one renewal interval only: the newest events are read through the (at, id) index, and
    # an unbounded search would walk the whole trail when the engine never ran (older is stale anyway).
    since = timezone.now() - timedelta(days=settings.RENEWAL_INTERVAL_DAYS)
    # Its redemptions only (each sweep's tasks write one per grant, success or failure), through the
    # (action, at, id) index: not every event of the interval (0.8 s at 10 million, bench/scale.py).
    event = (
        AuditEvent.objects.filter(
            action__in=[AuditEvent.Action.REFRESHED, AuditEvent.Action.REFRESH_FAILED],
            actor_type=AuditEvent.ActorType.SYSTEM,
            actor_id__startswith=RENEWAL_ACTOR_PREFIX,
            at__gte=since,
        )
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    return event


def grants_by_state_count() -> dict[str, int]:
    """Grants per state value. COUNT(*), not COUNT(id): PostgreSQL answers from the state index
    alone (index-only) instead of reading every grant row (80 ms at 100,000 grants, bench/scale.py)."""
    return dict(
        ConsentGrant.objects.order_by().values_list("state").annotate(n=Count("*")).values_list("state", "n")
    )


def health_summary_get(*, now: datetime | None = None) -> HealthSummary:
    now = now or timezone.now()
    by_state = grants_by_state_count()
    # Only the grants lapsing within 30 days are read (the policy_expires_at index), not all of them.
    expiring = ConsentGrant.objects.filter(
        state__in=ConsentGrant.ISSUABLE_STATES,
        policy_expires_at__gte=now,
        policy_expires_at__lt=now + timedelta(days=30),
    ).aggregate(
        in_7=Count("policy_expires_at", filter=Q(policy_expires_at__lt=now + timedelta(days=7))),
        in_30=Count("*"),
    )
    # grant_record_failure writes "<class>: <message>" into the detail of each failure event.
    failures = AuditEvent.objects.filter(
        action=AuditEvent.Action.REFRESH_FAILED, at__gte=now - timedelta(hours=24)
    ).aggregate(
        **{cls.value: Count("id", filter=Q(detail__startswith=f"{cls.value}:")) for cls in FailureClass}
    )
    return HealthSummary(
        grants_by_state={state.label: by_state.get(state.value, 0) for state in ConsentGrant.State},
        expiring_7_days=expiring["in_7"],
        expiring_30_days=expiring["in_30"],
        failures_by_class_24h=failures,
        last_sweep_at=last_sweep_at_get(),
        global_kill_switch=KillSwitch.objects.filter(application=None).first(),
    )
