"""What each audience code is called where people read it: the one mapping every page, e-mail and
export uses (the codes themselves stay in settings.SAM_AUDIENCES, the API and the audit trail)."""

from __future__ import annotations

from collections.abc import Iterable

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
