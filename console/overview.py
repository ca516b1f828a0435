"""The figures of the staff console's home: what needs a person now (tokens.staff_admin.health) and the last
30 days of the audit trail, day by day.

The audit trail can hold tens of millions of rows (partitioned by month). Its activity is counted
by aggregate queries whose filter is a range of `at` and a list of actions, so PostgreSQL reads
only the month or two the range covers (partition pruning), grouped in the database: one row comes
back per (day, action, audience, failure class), a few hundred at most. Even so, 30 days at that
scale are ~800,000 rows (~0.3 s, bench/RESULTS.md). The trail is append-only, so a day that has
ended no longer changes: each finished day's counts are kept in the shared cache and only the
current day is counted on every view (a finished day is read once, then served from the cache for
as long as it stays in the window).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, CharField, Count, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from tokens.audiences import audience_name
from tokens.issuance.failures import FailureClass
from tokens.models import AuditEvent, KillSwitch
from tokens.staff_admin.health import FAILURE_CLASS_NAMES, HealthSummary, health_summary_get

ACTIVITY_DAYS = 30
# An audit row is stamped (`at`) before its transaction commits: a day counts as finished, and is
# cached, only this long after its midnight, when no row stamped that day can still be in flight.
DAY_SETTLES_AFTER = timedelta(minutes=10)
DAY_CACHE_SECONDS = (ACTIVITY_DAYS + 2) * 24 * 3600
OTHER = "other"
Action = AuditEvent.Action
ACTIVITY_ACTIONS = [
    Action.TOKEN_ISSUED,
    Action.TOKEN_DENIED,
    Action.REFRESHED,
    Action.RENEWED,
    Action.REFRESH_FAILED,
]
# (action, audience or "other", failure class or "", events) for one day.
DayCounts = list[tuple[str, str, str, int]]


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    counts: list[int]  # one a day, oldest first

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    days: list[date]
    series: list[Series]

    @property
    def total(self) -> int:
        return sum(series.total for series in self.series)

    @property
    def rows(self) -> list[tuple[date, list[int]]]:
        """Day by day, newest first, each with its count per series (the chart's table)."""
        return [(day, [s.counts[i] for s in self.series]) for i, day in reversed(list(enumerate(self.days)))]


@dataclass(frozen=True)
class Overview:
    health: HealthSummary
    charts: list[Chart]


def activity_days(*, now: datetime) -> list[date]:
    """The last ACTIVITY_DAYS days (UTC), today included, oldest first."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=n) for n in range(ACTIVITY_DAYS - 1, -1, -1)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def audit_activity_count(*, start: datetime, end: datetime | None = None) -> dict[date, DayCounts]:
    """The chart actions' events per UTC day in [start, end): one aggregate query, grouped in the
    database. Audiences the panel does not serve (a caller may ask for any) count as "other"."""
    failure_class = Case(
        *[
            When(action=Action.REFRESH_FAILED, detail__startswith=f"{cls.value}:", then=Value(cls.value))
            for cls in FailureClass
        ],
        default=Value(""),
        output_field=CharField(),
    )
    events = AuditEvent.objects.filter(action__in=ACTIVITY_ACTIONS, at__gte=start)
    if end is not None:
        events = events.filter(at__lt=end)
    rows = (
        events.order_by()
        .annotate(day=TruncDate("at", tzinfo=UTC), failure_class=failure_class)
        .values_list("day", "action", "audience", "failure_class")
        .annotate(events=Count("*"))
    )
    # Audiences are bucketed here, not in SQL: an expression in the GROUP BY makes PostgreSQL
    # misjudge the groups and sort the month on disk instead of hashing it (4x slower,
    # bench/RESULTS.md).
    served = set(settings.SAM_AUDIENCES)
    counts: dict[date, dict[tuple[str, str, str], int]] = {}
    for day, action, audience, cls, count in rows:
        key = (action, audience if audience in served else OTHER, cls)
        counts.setdefault(day, {})[key] = counts.get(day, {}).get(key, 0) + count
    return {day: sorted((*key, count) for key, count in keys.items()) for day, keys in counts.items()}


def _day_key(day: date) -> str:
    # The audiences are part of the key: a day counted under other settings is counted again.
    audiences = hashlib.sha256(",".join(sorted(settings.SAM_AUDIENCES)).encode()).hexdigest()[:12]
    return f"console:activity:{day.isoformat()}:{audiences}"


def audit_activity_get(*, days: list[date], now: datetime) -> dict[date, DayCounts]:
    """The counts of each day: finished days from the cache (counted once, in one query, when
    missing), the others counted now (one query)."""
    finished = [day for day in days if _midnight(day) + timedelta(days=1) + DAY_SETTLES_AFTER <= now]
    live = [day for day in days if day not in finished]
    cached = cache.get_many([_day_key(day) for day in finished])
    counts = {day: cached[_day_key(day)] for day in finished if _day_key(day) in cached}
    missing = [day for day in finished if day not in counts]
    if missing:
        counted = audit_activity_count(
            start=_midnight(missing[0]), end=_midnight(missing[-1]) + timedelta(days=1)
        )
        fresh = {day: counted.get(day, []) for day in finished if missing[0] <= day <= missing[-1]}
        cache.set_many({_day_key(day): rows for day, rows in fresh.items()}, DAY_CACHE_SECONDS)
        counts.update(fresh)
    if live:
        counted = audit_activity_count(start=_midnight(live[0]))
        counts.update({day: counted.get(day, []) for day in live})
    return counts


def _series(
    days: list[date], counts: dict[tuple[str, date], int], keys: Iterable[tuple[str, str]]
) -> list[Series]:
    return [Series(key, label, [counts.get((key, day), 0) for day in days]) for key, label in keys]


def overview_activity_get(*, now: datetime) -> list[Chart]:
    """The console's four charts of the last ACTIVITY_DAYS days: access tokens issued and refused
    by audience, renewals, refresh failures by class."""
    days = activity_days(now=now)
    issued: dict[tuple[str, date], int] = {}
    refused: dict[tuple[str, date], int] = {}
    renewals: dict[tuple[str, date], int] = {}
    failures: dict[tuple[str, date], int] = {}
    for day, rows in audit_activity_get(days=days, now=now).items():
        for action, audience, failure_class, events in rows:
            target, key = {
                Action.TOKEN_ISSUED: (issued, audience),
                Action.TOKEN_DENIED: (refused, audience),
                Action.REFRESHED: (renewals, Action.REFRESHED.value),
                Action.RENEWED: (renewals, Action.RENEWED.value),
                Action.REFRESH_FAILED: (failures, failure_class or OTHER),
            }[Action(action)]
            target[(key, day)] = target.get((key, day), 0) + events

    def audiences(counts: dict[tuple[str, date], int]) -> list[tuple[str, str]]:
        keys = [(name, audience_name(name)) for name in settings.SAM_AUDIENCES]
        return keys + ([(OTHER, "Other audiences")] if any(k == OTHER for k, _ in counts) else [])

    classes = [(cls.value, FAILURE_CLASS_NAMES[cls]) for cls in FailureClass]
    if any(key == OTHER for key, _ in failures):
        classes.append((OTHER, "Without a class"))
    renewal_kinds = [
        (Action.REFRESHED.value, "Refresh token redeemed (keep-alive)"),
        (Action.RENEWED.value, "Consent renewed by the partner"),
    ]
    return [
        Chart("issued", "Access tokens issued, by audience", days, _series(days, issued, audiences(issued))),
        Chart(
            "refused", "Access tokens refused, by audience", days, _series(days, refused, audiences(refused))
        ),
        Chart("renewals", "Renewals", days, _series(days, renewals, renewal_kinds)),
        Chart("failures", "Refresh failures, by class", days, _series(days, failures, classes)),
    ]


def kill_switches_engaged() -> list[KillSwitch]:
    """The engaged kill switches, the global one first, then by application name."""
    switches = KillSwitch.objects.filter(engaged=True).select_related("application")
    return sorted(
        switches, key=lambda s: (s.application is not None, s.application.name if s.application else "")
    )


def overview_figures(*, now: datetime | None = None) -> Overview:
    """Everything the console's home shows, in a fixed number of queries whatever the number of
    grants or audit events: health's six, and one for the activity of the current day (one more
    when finished days are missing from the cache)."""
    now = now or timezone.now()
    return Overview(health=health_summary_get(now=now), charts=overview_activity_get(now=now))
