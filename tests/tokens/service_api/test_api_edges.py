"""The service API's edges: oversized bodies (413), wrong methods (405), unauthenticated requests
rate-limited per address (429 with Retry-After), the `errors` list on every 422, and a
partner-scoped key refused first for a partner outside its scope."""

from __future__ import annotations

import pytest

from partners.models import Partner
from sandbox import demo
from tokens.models import AuditEvent
from tokens.service_api.api import PROBLEM_TYPE_BASE
from tokens.service_api.service_clients import service_client_create

pytestmark = pytest.mark.django_db


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM_TYPE_BASE + code.replace("_", "-") and body["status"] == status
    return body


def _body(**overrides: object) -> dict[str, object]:
    return {"partner_tenant_id": demo.CONTOSO, "audience": "graph", "purpose": "list users"} | overrides


def test_a_three_megabyte_body_is_413_unread(api_call) -> None:
    body = '{"purpose": "' + "x" * (3 * 1024 * 1024) + '"}'
    _problem(api_call(body), 413, "request_too_large")
    assert not AuditEvent.objects.exists()


def test_a_large_body_sent_without_a_length_is_413_too(client, service_key, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.SERVICE_API_MAX_BODY_BYTES = 10**9  # only Django's own limit applies
    response = client.post(
        "/api/v1/tokens",
        data='{"purpose": "' + "x" * 4096 + '"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {service_key}",
    )
    _problem(response, 413, "request_too_large")


@pytest.mark.parametrize(
    ("method", "path", "allowed"), [("get", "/api/v1/tokens", "POST"), ("delete", "/api/v1/ping", "GET")]
)
def test_a_wrong_method_is_405_as_a_problem_naming_the_allowed_ones(
    client, service_key, method, path, allowed
) -> None:
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {service_key}")
    _problem(response, 405, "method_not_allowed")
    assert response["Allow"] == allowed


def test_unauthenticated_requests_are_rate_limited_per_address(client, service_key, settings) -> None:
    settings.SERVICE_API_UNAUTHENTICATED_PER_MINUTE = 3
    for _ in range(3):
        _problem(
            client.get("/api/v1/ping", HTTP_AUTHORIZATION="Bearer wrong", REMOTE_ADDR="192.0.2.7"),
            401,
            "unauthenticated",
        )
    limited = client.get("/api/v1/ping", HTTP_AUTHORIZATION="Bearer wrong", REMOTE_ADDR="192.0.2.7")
    _problem(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Even the right key waits from that address (the key is not looked at); others are unaffected.
    right = client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}", REMOTE_ADDR="192.0.2.7")
    _problem(right, 429, "rate_limited")
    assert (
        client.get(
            "/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}", REMOTE_ADDR="192.0.2.8"
        ).status_code
        == 200
    )


def test_authenticated_requests_do_not_use_the_unauthenticated_budget(client, service_key, settings) -> None:
    settings.SERVICE_API_UNAUTHENTICATED_PER_MINUTE = 1
    for _ in range(5):
        assert client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_body(purpose="   "), "purpose"),
        (_body(purpose="line\nbreak"), "purpose"),
        (_body(purpose="tab\there"), "purpose"),
        (_body(audience="exchange"), "audience"),
        (_body(partner_tenant_id="not-a-uuid"), "partner_tenant_id"),
    ],
)
def test_every_422_carries_the_errors_list_naming_the_field(api_call, body, field) -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    problem = _problem(api_call(body), 422, "invalid_request")
    assert [error["loc"] for error in problem["errors"]] == [field]
    assert all(error["msg"] for error in problem["errors"])


def test_a_scoped_key_is_refused_for_a_partner_outside_its_scope_before_anything_else(api_call) -> None:
    contoso = Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    Partner.objects.create(tenant_id=demo.FABRIKAM, display_name="Fabrikam")
    _, key = service_client_create(
        name="fabrikam-graph", audiences=["graph"], partner_tenant_ids=[demo.FABRIKAM]
    )
    # An audience the key may not ask for, for a partner outside its scope: the scope answers.
    _problem(api_call(_body(audience="arm"), key=key), 403, "partner_not_allowed")
    _problem(api_call(_body(audience="graph"), key=key), 403, "partner_not_allowed")
    denials = AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_DENIED)
    assert [event.error_code for event in denials] == ["partner_not_allowed", "partner_not_allowed"]
    # Nothing on Contoso's activity page (the dashboard lists the partner's audit rows).
    assert not AuditEvent.objects.filter(partner=contoso).exists()
    # Within its scope, the audience check still answers.
    _problem(
        api_call(_body(partner_tenant_id=demo.FABRIKAM, audience="arm"), key=key), 403, "audience_not_allowed"
    )
    _problem(api_call(_body(audience="exchange")), 422, "invalid_request")
