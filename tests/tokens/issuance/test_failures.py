from __future__ import annotations

import pytest

from tokens.issuance.failures import (
    FailureClass,
    failure_from_error_response,
    failure_from_http_status,
    failure_from_network_error,
)


def _entra(error: str, code: int, suberror: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "error": error,
        "error_description": f"AADSTS{code}: something.\r\nTrace ID: x\r\nCorrelation ID: y\r\nTimestamp: z",
        "error_codes": [code],
    }
    if suberror:
        body["suberror"] = suberror
    return body


@pytest.mark.parametrize(
    ("error", "code", "expected"),
    [
        ("invalid_grant", 700082, FailureClass.PARTNER),
        ("invalid_grant", 50173, FailureClass.PARTNER),
        ("interaction_required", 50076, FailureClass.PARTNER),
        ("invalid_grant", 53003, FailureClass.PARTNER),
        ("invalid_grant", 65001, FailureClass.PARTNER),
        ("invalid_client", 7000222, FailureClass.OPERATOR),
        ("invalid_client", 7000215, FailureClass.OPERATOR),
        ("invalid_client", 700027, FailureClass.OPERATOR),
        # The application disabled in, or deleted from, one partner's tenant: that partner's to fix.
        ("unauthorized_client", 700016, FailureClass.PARTNER),
        ("unauthorized_client", 7000112, FailureClass.PARTNER),
        ("invalid_request", 50020, FailureClass.PARTNER),
        ("invalid_client", 700024, FailureClass.OPERATOR),  # any client-authentication failure
        ("temporarily_unavailable", 90033, FailureClass.TRANSIENT),
        ("invalid_grant", 50196, FailureClass.TRANSIENT),
        ("invalid_grant", 123456789, FailureClass.PARTNER),
        # Unplaced: staff look at it, and nothing is paused.
        ("weird_error", 123456789, FailureClass.ATTENTION),
        ("invalid_scope", 70011, FailureClass.ATTENTION),
        ("unauthorized_client", 123, FailureClass.ATTENTION),
    ],
)
def test_entra_errors_are_classified_by_code_not_by_text(
    error: str, code: int, expected: FailureClass
) -> None:
    failure = failure_from_error_response(result=_entra(error, code))
    assert failure.failure_class is expected
    assert failure.code == f"AADSTS{code}"


def test_a_customer_tenant_without_consent_does_not_blame_the_partner() -> None:
    for code in (65001, 90099, 50020, 53003):
        failure = failure_from_error_response(result=_entra("invalid_grant", code), for_customer=True)
        assert failure.failure_class is FailureClass.CUSTOMER


def test_the_same_code_in_the_partner_tenant_needs_the_partner() -> None:
    assert (
        failure_from_error_response(result=_entra("invalid_grant", 65001)).failure_class
        is FailureClass.PARTNER
    )


def test_http_and_network_failures_are_transient_and_keep_retry_after() -> None:
    failure = failure_from_http_status(status=429, retry_after=17)
    assert failure.is_transient and failure.retry_after == 17 and failure.code == "HTTP_429"
    assert failure_from_network_error(timed_out=True).code == "TIMEOUT"
    assert failure_from_network_error(timed_out=False).is_transient


def test_messages_never_echo_the_provider_description() -> None:
    # Descriptions can quote request data; we store only our own words and the code.
    failure = failure_from_error_response(
        result={
            "error": "invalid_grant",
            "error_description": "AADSTS1: token=SECRETVALUE",
            "error_codes": [1],
        }
    )
    assert "SECRETVALUE" not in failure.message


def test_only_the_applications_own_credential_is_the_operator_class() -> None:
    assert (
        failure_from_error_response(result={"error": "invalid_client"}).failure_class is FailureClass.OPERATOR
    )
    for code in (7000215, 7000222, 700027, 50012, 7000218):
        assert failure_from_error_response(result=_entra("invalid_client", code)).failure_class is (
            FailureClass.OPERATOR
        )


def test_per_tenant_codes_tell_the_partner_what_to_do() -> None:
    disabled = failure_from_error_response(result=_entra("unauthorized_client", 7000112))
    assert "enable it again" in disabled.message and "Global Administrator" in disabled.message
    removed = failure_from_error_response(result=_entra("unauthorized_client", 700016))
    assert "renew the consent" in removed.message
