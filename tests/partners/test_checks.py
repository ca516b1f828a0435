"""The consent request the panel would send is checked at start-up."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

PC = "https://api.partnercenter.microsoft.com/user_impersonation"


def _errors(settings, audiences):
    settings.SAM_AUDIENCES = audiences
    return [message for message in run_checks() if message.id == "partners.E001"]


def test_named_scopes_pass(settings) -> None:
    assert (
        _errors(settings, {"partner_center": [PC], "graph": ["https://graph.microsoft.com/User.Read"]}) == []
    )


def test_a_single_default_scope_passes_the_mixing_rule(settings) -> None:
    (error,) = _errors(settings, {"graph": ["https://graph.microsoft.com/.default"]})
    assert "no Partner Center scope" in error.msg


@pytest.mark.parametrize(
    "audiences",
    [
        {"partner_center": [PC], "graph": ["https://graph.microsoft.com/.default"]},
        {
            "partner_center": ["https://api.partnercenter.microsoft.com/.default"],
            "arm": ["https://management.azure.com/user_impersonation"],
        },
    ],
)
def test_default_mixed_with_named_scopes_is_refused(settings, audiences) -> None:
    (error,) = _errors(settings, audiences)
    assert "AADSTS70011" in error.msg and "SAM_AUDIENCES" in error.msg


def test_the_shipped_default_passes() -> None:
    assert [message for message in run_checks() if message.id == "partners.E001"] == []
