"""Badges of the staff console: a word with a colour (static/console/console.css, `.badge-<tone>`;
the CSP allows no inline style). The colour only helps the eye: every badge says its meaning."""

from __future__ import annotations

from typing import Literal

from django.utils.html import format_html
from django.utils.safestring import SafeString

from tokens.models import ConsentGrant

BadgeTone = Literal["ok", "warn", "bad", "attention", "muted"]
State = ConsentGrant.State

# Each grant state's badge: its colour and a short word (the full label goes on hover).
STATE_BADGES: dict[str, tuple[BadgeTone, str]] = {
    State.ACTIVE: ("ok", "Active"),
    State.EXPIRING: ("warn", "Expiring"),
    State.NEEDS_RENEWAL: ("bad", "Needs renewal"),
    State.NEEDS_ATTENTION: ("attention", "Needs attention"),
    State.REVOKED: ("muted", "Revoked"),
    State.EXPIRED: ("muted", "Expired"),
}


def badge(text: str, tone: BadgeTone, *, title: str = "") -> SafeString:
    if title:
        return format_html('<span class="badge badge-{}" title="{}">{}</span>', tone, title, text)
    return format_html('<span class="badge badge-{}">{}</span>', tone, text)
