"""The OpenAPI document: served at a stable URL, equal to the reviewed copy in docs/, and honoured
by the API (schemathesis generates requests from it and checks every answer against it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, settings

from partners.models import Partner
from sandbox import demo

# Ninja writes OpenAPI 3.1 (nullable fields as `anyOf` with `null`); schemathesis 3 supports it
# behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
OPENAPI_URL = "/api/v1/openapi.json"


def test_the_served_document_is_the_committed_one(client) -> None:
    """A change to the API must come with `make openapi` and its diff reviewed."""
    response = client.get(OPENAPI_URL)
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text()), (
        "run `make openapi` and review docs/openapi.json"
    )


def test_the_document_is_valid_openapi(client) -> None:
    loaded = schemathesis.from_dict(client.get(OPENAPI_URL).json())
    operations = [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]
    assert {operation.verbose_name for operation in operations} == {
        "POST /api/v1/tokens",
        "GET /api/v1/ping",
    }


@pytest.fixture
def wsgi_in_test_transaction() -> Iterator[WSGIHandler]:
    """The WSGI app inside the test's transaction: like Django's test client, stop the request
    signals from closing the connection (which would end the transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_in_test_transaction: WSGIHandler) -> schemathesis.BaseSchema:
    return schemathesis.from_wsgi(OPENAPI_URL, wsgi_in_test_transaction)


schema = schemathesis.from_pytest_fixture("api_schema")


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_5xx_and_no_schema_violation(case, service_client, service_key) -> None:
    # A partner that exists (without a grant) so that generated requests reach the broker too.
    Partner.objects.get_or_create(tenant_id=demo.CONTOSO, defaults={"display_name": "Contoso"})
    type(service_client).objects.filter(pk=service_client.pk).update(rate_limit_per_minute=1_000_000)
    # On the case itself, so that the "auth is enforced" check can send it again without the key.
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {service_key}"}
    # That check sends requests without the key, many a minute from one address: lift the per-address
    # limit on unauthenticated requests, as the client's own rate limit is lifted above.
    with override_settings(SERVICE_API_UNAUTHENTICATED_PER_MINUTE=1_000_000):
        response = case.call_wsgi()
        case.validate_response(response)
    assert response.status_code < 500
