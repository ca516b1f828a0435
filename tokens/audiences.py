"""Audience names (the keys of SAM_AUDIENCES and of an application's audiences) in words, for
people: the token API and the audit trail keep the names."""

from __future__ import annotations

from django.conf import settings

AUDIENCE_WORDS = {
    "partner_center": "Partner Center",
    "graph": "Microsoft Graph",
    "arm": "Azure Resource Manager",
}


def audience_label(name: str) -> str:
    """The audience in words; a name configured without words is shown as it is."""
    return AUDIENCE_WORDS.get(name, name)


def audience_choices() -> list[tuple[str, str]]:
    """Every configured audience (SAM_AUDIENCES), as (name, "Words (name)") for a form."""
    return [
        (name, f"{audience_label(name)} ({name})" if name in AUDIENCE_WORDS else name)
        for name in settings.SAM_AUDIENCES
    ]
