"""Numbers for the staff health page and the staff console's home, each one aggregate query, and
how each reads: OK (green), warning (amber) or failing (red), always shown with its word too."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from tokens.issuance.failures import FailureClass
from tokens.models import AuditEvent, ConsentGrant, KillSwitch, OperatorAlert
from tokens.renewal.liveness import renewal_liveness_get
from tokens.staff_admin.badges import STATE_BADGES, BadgeTone

FAILURES_WINDOW = timedelta(hours=24)
FAILURE_CLASS_NAMES = {
    FailureClass.TRANSIENT: "Transient (retried)",
    FailureClass.PARTNER: "Partner must act",
    FailureClass.OPERATOR: "Our credential",
    FailureClass.ATTENTION: "Unclassified code",
    FailureClass.CUSTOMER: "One customer",
}


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILING = "failing"

    @property
    def label(self) -> str:
        return {"ok": "OK", "warning": "Warning", "failing": "Failing"}[self.value]

    @property
    def tone(self) -> BadgeTone:
        tones: dict[str, BadgeTone] = {"ok": "ok", "warning": "warn", "failing": "bad"}
        return tones[self.value]


def status_worst(statuses: list[Status]) -> Status:
    order = [Status.OK, Status.WARNING, Status.FAILING]
    return max(statuses, key=order.index, default=Status.OK)


@dataclass(frozen=True)
class StateCount:
    state: str
    label: str
    count: int

    @property
    def tone(self) -> BadgeTone:
        return STATE_BADGES[self.state][0]


@dataclass(frozen=True)
class ClassCount:
    failure_class: FailureClass
    count: int

    @property
    def label(self) -> str:
        return FAILURE_CLASS_NAMES[self.failure_class]

    @property
    def status(self) -> Status:
        """The application's own credential refused is an outage for every partner; any other
        failure is one partner's, one customer's or a retry's."""
        if not self.count:
            return Status.OK
        return Status.FAILING if self.failure_class == FailureClass.OPERATOR else Status.WARNING


@dataclass(frozen=True)
class HealthSummary:
    now: datetime
    grants_by_state: list[StateCount]
    expiring_7_days: int
    expiring_30_days: int
    failures_by_class_24h: list[ClassCount]
    last_sweep_at: datetime | None
    sweep_stale: bool
    open_alerts: int
    paused_applications: int
    grants_needing_attention: int
    # The global switch (engaged or not, if it was ever set) and every engaged per-application one.
    kill_switches: list[KillSwitch]

    @property
    def failures_since(self) -> datetime:
        return self.now - FAILURES_WINDOW

    @property
    def global_kill_switch(self) -> KillSwitch | None:
        return next((switch for switch in self.kill_switches if switch.application_id is None), None)

    @property
    def engaged_kill_switches(self) -> list[KillSwitch]:
        return [switch for switch in self.kill_switches if switch.engaged]

    @property
    def sweep_status(self) -> Status:
        return Status.FAILING if self.sweep_stale else Status.OK

    @property
    def alerts_status(self) -> Status:
        if self.paused_applications:
            return Status.FAILING
        return Status.WARNING if self.open_alerts else Status.OK

    @property
    def attention_status(self) -> Status:
        return Status.WARNING if self.grants_needing_attention else Status.OK

    @property
    def expiring_status(self) -> Status:
        return Status.WARNING if self.expiring_7_days else Status.OK

    @property
    def failures_24h(self) -> int:
        return sum(row.count for row in self.failures_by_class_24h)

    @property
    def failures_status(self) -> Status:
        return status_worst([row.status for row in self.failures_by_class_24h])

    @property
    def kill_switch_status(self) -> Status:
        return Status.FAILING if self.engaged_kill_switches else Status.OK

    @property
    def overall_status(self) -> Status:
        return status_worst(
            [
                self.sweep_status,
                self.alerts_status,
                self.attention_status,
                self.expiring_status,
                self.failures_status,
                self.kill_switch_status,
            ]
        )


def grants_by_state_count() -> dict[str, int]:
    """Grants per state value. COUNT(*), not COUNT(id): PostgreSQL answers from the state index
    alone (index-only) instead of reading every grant row (80 ms at 100,000 grants, bench/scale.py)."""
    return dict(
        ConsentGrant.objects.order_by().values_list("state").annotate(n=Count("*")).values_list("state", "n")
    )


def grants_lapsing_count(*, now: datetime) -> tuple[int, int]:
    """Live grants whose policy expires within 7 days, and within 30, in one query over the
    (state, policy_expires_at) index: only the grants lapsing soonest are read. The grants list's
    `?lapses=7` and `?lapses=30` filters count the same grants (tests/console/test_overview.py)."""
    counts = ConsentGrant.objects.filter(
        state__in=ConsentGrant.ISSUABLE_STATES,
        policy_expires_at__gte=now,
        policy_expires_at__lt=now + timedelta(days=30),
    ).aggregate(
        in_7=Count("policy_expires_at", filter=Q(policy_expires_at__lt=now + timedelta(days=7))),
        in_30=Count("*"),
    )
    return counts["in_7"], counts["in_30"]


def health_summary_get(*, now: datetime | None = None) -> HealthSummary:
    now = now or timezone.now()
    by_state = grants_by_state_count()
    expiring_7_days, expiring_30_days = grants_lapsing_count(now=now)
    # grant_record_failure writes "<class>: <message>" into the detail of each failure event.
    failures = AuditEvent.objects.filter(
        action=AuditEvent.Action.REFRESH_FAILED, at__gte=now - FAILURES_WINDOW
    ).aggregate(
        **{cls.value: Count("id", filter=Q(detail__startswith=f"{cls.value}:")) for cls in FailureClass}
    )
    liveness = renewal_liveness_get(now=now)
    alerts = OperatorAlert.objects.filter(resolved_at=None).aggregate(
        open=Count("id"), paused=Count("application", filter=Q(pauses=True), distinct=True)
    )
    switches = KillSwitch.objects.filter(Q(application=None) | Q(engaged=True)).select_related("application")
    return HealthSummary(
        now=now,
        grants_by_state=[
            StateCount(state.value, state.label, by_state.get(state.value, 0)) for state in ConsentGrant.State
        ],
        expiring_7_days=expiring_7_days,
        expiring_30_days=expiring_30_days,
        failures_by_class_24h=[ClassCount(cls, failures[cls.value]) for cls in FailureClass],
        last_sweep_at=liveness.last_sweep_at,
        sweep_stale=liveness.stale,
        open_alerts=alerts["open"],
        paused_applications=alerts["paused"],
        grants_needing_attention=by_state.get(ConsentGrant.State.NEEDS_ATTENTION.value, 0),
        kill_switches=sorted(switches, key=lambda switch: (switch.application_id is not None, str(switch))),
    )
