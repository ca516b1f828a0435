"""Template helpers of the partner pages: audiences in words, relative dates with the exact time
kept in <time>, the customer tenant of an event, and the tone (colour class) of an activity event."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from partners.activity import event_actor, event_tone
from tokens.audiences import audience_name, audience_names

register = template.Library()

register.filter("audience", audience_name)
register.filter("event_actor", event_actor)
register.filter("event_tone", event_tone)
# The customer tenant of an event: every partner page shows it through this filter only.


@register.filter
def audiences(codes: Iterable[str]) -> str:
    return ", ".join(audience_names(codes))


def _count(value: int, unit: str) -> str:
    return f"{value} {unit}{'' if value == 1 else 's'}"


def relative(moment: datetime, now: datetime) -> str:
    """ "in 12 days", "3 hours ago", "just now": the largest unit that fits, rounded down."""
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now"
    minutes, hours, days = int(span // 60), int(span // 3600), int(span // 86400)
    if span < 3600:
        amount = _count(minutes, "minute")
    elif span < 2 * 86400:
        amount = _count(hours, "hour")
    elif days < 120:  # the policy period (90 days by default) reads in days
        amount = _count(days, "day")
    elif days < 730:
        amount = _count(days // 30, "month")
    else:
        amount = _count(days // 365, "year")
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


@register.simple_tag
def when(moment: datetime | None, exact: str = "", never: str = "never") -> SafeString:
    """A time as people say it, with the exact UTC time in the element (datetime, title).
    `exact="date"` or `exact="time"` also prints the exact date (or date and time) after it."""
    if moment is None:
        return format_html("{}", never)
    utc = moment.astimezone(UTC)
    stamp = f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    shown = {"date": f"{utc:%Y-%m-%d}", "time": f"{utc:%Y-%m-%d %H:%M} UTC"}.get(exact, "")
    if shown:
        return format_html(
            '<time datetime="{}" title="{}">{} <span class="exact">({})</span></time>',
            utc.isoformat(), stamp, relative(utc, timezone.now()), shown,
        )  # fmt: skip
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', utc.isoformat(), stamp, relative(utc, timezone.now())
    )
