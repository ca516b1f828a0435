"""A partner's activity log: its filters, the events they select (one partner's only, the partner
the access helper gives), how an event reads, and the CSV export that streams it."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet
from django.http import QueryDict

from gdap.names import customer_names_get
from partners.models import Partner
from tokens.audiences import audience_name
from tokens.audit_pages import audit_pages_iter
from tokens.models import AuditEvent

# Rows per query of the export: memory stays one page however many events match.
CSV_PAGE_SIZE = 500
CSV_HEADER = (
    "time (UTC)", "event", "outcome", "error code", "by", "application", "audience", "customer",
    "customer tenant", "purpose", "detail",
)  # fmt: skip
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GOOD = frozenset(
    {"consented", "renewed", "token_issued", "refreshed", "kill_switch_released", "partner_resumed"}
)
_NOTABLE = frozenset(
    {"revoked", "expired", "state_changed", "kill_switch_engaged", "partner_suspended", "operator_alert"}
)
_BAD = frozenset({"token_denied", "refresh_failed", "consent_failed"})


class ActivityFilterError(ValueError):
    """A filter the activity page cannot apply; the message says which and why."""


@dataclass(frozen=True)
class ActivityFilters:
    action: str = ""
    outcome: str = ""
    since: date | None = None  # first UTC day included
    until: date | None = None  # last UTC day included

    def query(self) -> dict[str, str]:
        values = {
            "action": self.action,
            "outcome": self.outcome,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {key: value for key, value in values.items() if value}


def _day(value: str, label: str) -> date | None:
    if not value:
        return None
    if not _DAY.fullmatch(value):
        raise ActivityFilterError(
            f"“{label}” must be a date written YYYY-MM-DD (for example 2026-04-30), not “{value[:20]}”."
        )
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ActivityFilterError(f"“{label}” ({value}) is not a day of the calendar.") from None
    if not 1970 <= day.year <= 9998:
        raise ActivityFilterError(f"“{label}” must be a day between 1970 and 9998, not {value}.")
    return day


def activity_filters_parse(query: QueryDict) -> ActivityFilters:
    """The filters of a query string; raises ActivityFilterError naming every problem."""
    problems = []
    action, outcome = query.get("action", ""), query.get("outcome", "")
    if action and action not in AuditEvent.Action.values:
        problems.append("There is no such event type.")
    if outcome and outcome not in AuditEvent.Outcome.values:
        problems.append("There is no such outcome.")
    since = until = None
    for name, label in (("since", "From"), ("until", "To")):
        try:
            day = _day(query.get(name, ""), label)
        except ActivityFilterError as error:
            problems.append(str(error))
            continue
        since, until = (day, until) if name == "since" else (since, day)
    if since and until and since > until:
        problems.append(f"“From” ({since}) is after “To” ({until}): no day is in that range.")
    if problems:
        raise ActivityFilterError(" ".join(problems))
    return ActivityFilters(action=action, outcome=outcome, since=since, until=until)


def activity_events(*, partner: Partner, filters: ActivityFilters) -> QuerySet[AuditEvent]:
    """This partner's events that match, not ordered (the pages order them by key)."""
    events = AuditEvent.objects.filter(partner=partner)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.outcome:
        events = events.filter(outcome=filters.outcome)
    if filters.since is not None:
        events = events.filter(at__gte=datetime.combine(filters.since, time.min, tzinfo=UTC))
    if filters.until is not None:
        events = events.filter(
            at__lt=datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=UTC)
        )
    return events


def event_actor(event: AuditEvent) -> str:
    """Who did it; staff users stay "Staff user", without their internal id."""
    kind = str(event.get_actor_type_display())
    if event.actor_type == AuditEvent.ActorType.STAFF or not event.actor_id:
        return kind
    return f"{kind}: {event.actor_id}"


def event_tone(event: AuditEvent) -> str:
    """The colour class of an event: "bad" (refused, failed), "notable" (revoked, expired, a state
    change), "good" (issued, renewed) or "neutral"; the page prints the words next to the colour."""
    if event.outcome != AuditEvent.Outcome.SUCCESS or event.action in _BAD:
        return "bad"
    if event.action in _NOTABLE:
        return "notable"
    return "good" if event.action in _GOOD else "neutral"


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets a quote before it."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


class _Line:
    """csv.writer's file: each row comes back as the string it would have written."""

    def write(self, value: str) -> str:
        return value


def activity_csv_lines(*, partner: Partner, events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The CSV of `events` (the partner's), newest first, one chunk per page of CSV_PAGE_SIZE rows
    (one bounded query each, by key), so an export of any size holds one page in memory. Customers
    are named from the partner's GDAP inventory, read once (one row per customer, not per event)."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    names = customer_names_get(partner_id=partner.pk)
    for page in audit_pages_iter(events=events.select_related("application"), size=CSV_PAGE_SIZE):
        yield "".join(
            writer.writerow(
                [
                    csv_cell(value)
                    for value in (
                        f"{event.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                        str(event.get_action_display()),
                        str(event.get_outcome_display()),
                        event.error_code,
                        event_actor(event),
                        event.application.name if event.application else "",
                        audience_name(event.audience) if event.audience else "",
                        names.get(str(event.customer_tenant_id).lower(), "")
                        if event.customer_tenant_id
                        else "",
                        str(event.customer_tenant_id or ""),
                        event.purpose,
                        event.detail,
                    )
                ]
            )
            for event in page
        )
