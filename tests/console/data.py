"""A staff console worth looking at: grants in every state, some lapsing soon, alerts, a sweep,
and 30 days of audit events (plus older ones that must not count). Shared by the console's tests
and its browser test; the expected figures are spelled out here, next to the rows that make them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from tests.fixtures.staff import grant_make, partner_make
from tokens.models import Application, AuditEvent, ConsentGrant, OperatorAlert
from tokens.renewal.liveness import sweep_heartbeat_record

State = ConsentGrant.State


@dataclass(frozen=True)
class ConsoleData:
    application: Application
    now: datetime
    # What the overview must show for these rows.
    by_state: dict[str, int]
    lapsing_7: int
    lapsing_30: int
    issued_by_audience: dict[str, int]
    refused_by_audience: dict[str, int]
    refreshed: int
    renewed: int
    failures_by_class: dict[str, int]


# (state, days until the policy expires). Lapsing counts live (issuable) grants only: the ended
# ones hold nothing that can lapse, and a grant needing renewal waits for its partner whatever its
# expiry says.
GRANTS = [
    (State.ACTIVE, 3),
    (State.ACTIVE, 20),
    (State.ACTIVE, 80),
    (State.EXPIRING, 6),
    (State.NEEDS_RENEWAL, 25),
    (State.NEEDS_ATTENTION, 60),
    (State.REVOKED, 4),
    (State.EXPIRED, -2),
]


def console_data_make(*, now: datetime | None = None) -> ConsoleData:
    now = now or timezone.now()
    application = Application.objects.create(
        name="Reports",
        client_id="reports-client",
        authority_host="https://login.example",
        redirect_uri="https://x/",
    )
    grants = []
    for i, (state, days) in enumerate(GRANTS):
        partner = partner_make(tenant_id=f"00000000-0000-4000-8000-{i:012d}", name=f"Partner{i:02d}")
        grant = grant_make(
            partner=partner, application=application, policy_expires_at=now + timedelta(days=days)
        )
        # Ended grants hold no token (a constraint): state and token change together.
        ended = state in (State.REVOKED, State.EXPIRED)
        ConsentGrant.objects.filter(pk=grant.pk).update(
            state=state, **({"refresh_token": None} if ended else {})
        )
        grants.append(grant)
    today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)

    def event(action: str, days_ago: int, **fields: object) -> AuditEvent:
        # Mid-day on each day, today at its first minute (never after `now`).
        at = today - timedelta(days=days_ago) + (timedelta(hours=12) if days_ago else timedelta(minutes=1))
        return AuditEvent(
            actor_type="service", actor_id="orders", action=action, at=min(at, now),
            partner=grants[0].partner, grant=grants[0], application=application, **fields,
        )  # fmt: skip

    events = []
    issued = {"partner_center": 0, "graph": 0, "arm": 0}
    for days_ago in range(30):
        for audience, per_day in (("partner_center", 3), ("graph", 1 + days_ago % 4), ("arm", days_ago % 2)):
            events += [event("token_issued", days_ago, audience=audience) for _ in range(per_day)]
            issued[audience] += per_day
    refused = {"partner_center": 0, "graph": 2, "arm": 0}
    events += [event("token_denied", 2, audience="graph", outcome="denied", error_code="grant_revoked")] * 2
    events += [
        event("token_denied", 5, audience="bogus", outcome="denied", error_code="audience_not_granted")
    ]
    refreshed = 29
    events += [event("refreshed", days_ago, audience="partner_center") for days_ago in range(1, 30)]
    renewed = 2
    events += [event("renewed", 3), event("renewed", 17)]
    failures = {"transient": 3, "partner": 1, "operator": 1, "attention": 0, "customer": 0}
    events += [
        event("refresh_failed", 0, outcome="failure", detail="transient: HTTP 503"),
        event("refresh_failed", 4, outcome="failure", detail="transient: HTTP 429"),
        event("refresh_failed", 9, outcome="failure", detail="transient: timeout"),
        event("refresh_failed", 9, outcome="failure", detail="partner: AADSTS700082"),
        event("refresh_failed", 12, outcome="failure", detail="operator: AADSTS7000215"),
    ]
    # Older than the 30 days: never counted.
    events += [event("token_issued", 30, audience="graph"), event("refresh_failed", 31, detail="partner: x")]
    AuditEvent.objects.bulk_create([AuditEvent(**_fields(e)) for e in events])
    OperatorAlert.objects.create(
        application=application, code="AADSTS7000215", message="Secret refused", pauses=True
    )
    closed = OperatorAlert.objects.create(
        application=application, code="AADSTS9", message="Old", pauses=False
    )
    OperatorAlert.objects.filter(pk=closed.pk).update(resolved_at=now, resolved_by="1", resolution="fixed")
    sweep_heartbeat_record(now=now)
    return ConsoleData(
        application=application,
        now=now,
        by_state={state.value: sum(1 for s, _ in GRANTS if s == state) for state in State},
        lapsing_7=2,  # active in 3 days, expiring in 6
        lapsing_30=3,  # and active in 20
        issued_by_audience=issued,
        refused_by_audience={**refused, "other": 1},
        refreshed=refreshed,
        renewed=renewed,
        failures_by_class=failures,
    )


def _fields(event: AuditEvent) -> dict[str, object]:
    """A fresh row from a template event (the list repeats some objects)."""
    return {
        field.attname: getattr(event, field.attname)
        for field in AuditEvent._meta.concrete_fields
        if field.attname != "id"
    }
