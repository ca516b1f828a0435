"""What each audience code is called where people read it: the one mapping every page, form, e-mail
and export uses (the codes themselves stay in settings.SAM_AUDIENCES, the API and the audit trail's
fields)."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

AUDIENCE_NAMES = {
    "partner_center": "Partner Center",
    "graph": "Microsoft Graph",
    "arm": "Azure Resource Manager",
}


def audience_name(code: str) -> str:
    """The audience in words; a code an operator added to SAM_AUDIENCES without a name stays as it is."""
    return AUDIENCE_NAMES.get(code, code)


def audience_names(codes: Iterable[str]) -> list[str]:
    """In words, in the order of AUDIENCE_NAMES (then any other code), so every page lists them alike."""
    order = list(AUDIENCE_NAMES)
    ranked = sorted(set(codes), key=lambda code: (order.index(code) if code in order else len(order), code))
    return [audience_name(code) for code in ranked]


def audience_choices() -> list[tuple[str, str]]:
    """Every configured audience (SAM_AUDIENCES), as (code, "Words (code)") for a staff form."""
    return [
        (code, f"{audience_name(code)} ({code})" if code in AUDIENCE_NAMES else code)
        for code in settings.SAM_AUDIENCES
    ]
