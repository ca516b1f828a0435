"""Pages of the audit trail by key, not OFFSET: a page is the `size` events after (or before) the
(at, id) of the last one seen, newest first. Each query is a range scan of an index ending with
(at, id) that stops after one page (AuditEvent.Meta.indexes), however deep the page; OFFSET would
read and throw away every row before it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from tokens.models import AuditEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Cursor:
    at: datetime
    id: int

    def encode(self) -> str:
        return f"{(self.at - _EPOCH) // _MICROSECOND}_{self.id}"

    @classmethod
    def of(cls, event: AuditEvent) -> Cursor:
        return cls(event.at, event.id)


def cursor_decode(value: str | None) -> Cursor | None:
    """A cursor from a query string, or None when absent or malformed (the first page is shown)."""
    micros, _, event_id = (value or "").partition("_")
    try:
        return Cursor(_EPOCH + int(micros) * _MICROSECOND, int(event_id))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    newer: Cursor | None  # the cursor for the page of newer events, if there is one
    older: Cursor | None  # the cursor for the page of older events, if there is one


def _after(cursor: Cursor) -> Q:
    # `at >= cursor.at` alone bounds the index range; the OR settles ties on `at` by id.
    return Q(at__gte=cursor.at) & (Q(at__gt=cursor.at) | Q(id__gt=cursor.id))


def _before(cursor: Cursor) -> Q:
    return Q(at__lte=cursor.at) & (Q(at__lt=cursor.at) | Q(id__lt=cursor.id))


def audit_page_get(
    *, events: QuerySet[AuditEvent], size: int, before: Cursor | None = None, after: Cursor | None = None
) -> AuditPage:
    """One page of `events` (filtered, not ordered): the newest, the one older than `before`, or
    the one newer than `after`. One query: a page of size + 1 tells whether another one follows."""
    if after is not None and before is None:
        rows = list(events.filter(_after(after)).order_by("at", "id")[: size + 1])
        if not rows:  # nothing newer (any more): the newest page
            return audit_page_get(events=events, size=size)
        more = len(rows) > size
        rows = rows[:size][::-1]
        return AuditPage(
            rows, newer=Cursor.of(rows[0]) if more else None, older=Cursor.of(rows[-1]) if rows else None
        )
    if before is not None:
        events = events.filter(_before(before))
    rows = list(events.order_by("-at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return AuditPage(
        rows,
        newer=Cursor.of(rows[0]) if before is not None and rows else None,
        older=Cursor.of(rows[-1]) if more else None,
    )


def audit_newer_count(*, events: QuerySet[AuditEvent], page: AuditPage) -> int:
    """How many of `events` come before this page (for "page n of m")."""
    if not page.events:
        return 0
    return events.filter(_after(Cursor.of(page.events[0]))).count()


def audit_count_capped(*, events: QuerySet[AuditEvent], cap: int) -> int:
    """How many events match, counted up to `cap` + 1 only: the admin says "more than cap" rather
    than count ten million rows on every page. Ordered as the pages are, so that the count walks
    the same (at, id) index, index-only, instead of the first rows of a sequential scan."""
    return events.order_by("-at", "-id")[: cap + 1].count()


def audit_pages_iter(*, events: QuerySet[AuditEvent], size: int) -> Iterator[list[AuditEvent]]:
    """Every page of `events`, newest first: one query of `size` + 1 rows each, by key, so a reader
    of millions of events holds one page at a time."""
    page = audit_page_get(events=events, size=size)
    while page.events:
        yield page.events
        if page.older is None:
            return
        page = audit_page_get(events=events, size=size, before=page.older)
