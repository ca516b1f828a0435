"""The service token API: every status it answers, the scope of a key, the audit of each call."""

from __future__ import annotations

import re
import uuid

import pytest
from django.utils import timezone

from partners.models import Partner
from sandbox import demo
from tests.fixtures.service_clients import ALL_AUDIENCES
from tokens.audit import Actor
from tokens.issuance import broker
from tokens.issuance.killswitch import kill_switch_set
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent, ConsentGrant, ServiceClient
from tokens.service_api.api import PROBLEM_TYPE_BASE, PROBLEMS
from tokens.service_api.service_clients import service_client_create

pytestmark = pytest.mark.django_db


def _body(**overrides: object) -> dict[str, object]:
    return {
        "partner_tenant_id": demo.CONTOSO,
        "audience": "partner_center",
        "purpose": "list customers",
    } | overrides


def _assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEM_TYPE_BASE + code.replace("_", "-")
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.content.decode()
    return problem


def _denials() -> list[str]:
    return list(
        AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_DENIED).values_list("error_code", flat=True)
    )


# --- 200 --------------------------------------------------------------------------------------


def test_a_token_is_issued_and_the_call_is_audited_with_the_client_as_actor(
    consented_grant, api_call
) -> None:
    response = api_call(_body(audience="graph"), HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_on", "audience", "scope"}
    assert body["token_type"] == "Bearer" and body["audience"] == "graph"
    assert body["expires_on"] > timezone.now().timestamp() + 55 * 60
    assert demo.GRAPH_SCOPE.split("/")[2] in body["scope"]
    assert response["Cache-Control"] == "no-store"
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_ISSUED)
    assert (event.actor_type, event.actor_id) == (AuditEvent.ActorType.SERVICE, "marketplace-orders")
    assert (event.client_ip, event.request_id, event.purpose) == ("127.0.0.1", "req-42", "list customers")
    assert (event.grant_id, event.partner_id, event.application_id) == (
        consented_grant.pk,
        consented_grant.partner_id,
        consented_grant.application_id,
    )


def test_a_cache_hit_on_postgresql_costs_two_statements_the_key_and_the_checked_hit(
    postgres_only, consented_grant, client, api_call, django_assert_num_queries
) -> None:
    client.cookies.clear()  # the consent left a dashboard session; a service sends no cookie
    assert api_call(_body()).status_code == 200  # fills the cache, stamps the key's and the grant's last use
    with django_assert_num_queries(2):
        assert api_call(_body()).status_code == 200


def test_a_customer_tenant_token(consented_grant, api_call) -> None:
    response = api_call(_body(audience="graph", customer_tenant_id=demo.ADATUM))
    assert response.status_code == 200, response.content
    assert AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_ISSUED).customer_tenant_id == uuid.UUID(
        demo.ADATUM
    )


def test_ping_answers_the_authenticated_client(client, service_key) -> None:
    response = client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "client": "marketplace-orders"}


# --- 400 / 422 --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{not json", "\x00", "[1,"])
def test_a_body_that_is_not_json_is_400(api_call, raw) -> None:
    _assert_problem(api_call(raw), 400, "malformed_request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_body(partner_tenant_id="not-a-uuid"), "partner_tenant_id"),
        (_body(customer_tenant_id="42"), "customer_tenant_id"),
        (_body(purpose=""), "purpose"),
        (_body(purpose="x" * 501), "purpose"),
        (_body(audience=""), "audience"),
        ({"audience": "graph", "purpose": "x"}, "partner_tenant_id"),
        (["a list"], "body"),
    ],
)
def test_a_body_that_does_not_match_the_schema_is_422_naming_the_field(api_call, body, field) -> None:
    problem = _assert_problem(api_call(body), 422, "invalid_request")
    assert field in {error["loc"].split(".")[0] for error in problem["errors"]} or field == "body"


@pytest.mark.parametrize(
    "body", [_body(purpose="   "), _body(purpose="line\nbreak"), _body(audience="exchange")]
)
def test_a_semantically_invalid_request_is_422_and_nothing_is_issued(api_call, body) -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _assert_problem(api_call(body), 422, "invalid_request")
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_ISSUED).exists()


# --- 401 --------------------------------------------------------------------------------------


def _tampered(key: str) -> str:
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer samcp_0000000000000000_unknownsecret",
        "Bearer not-even-our-format",
        "tampered",
    ],
)
def test_a_missing_unknown_or_wrong_key_is_401(client, service_key, authorization) -> None:
    headers = {}
    if authorization == "tampered":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {_tampered(service_key)}"
    elif authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    response = client.post("/api/v1/tokens", data=_body(), content_type="application/json", **headers)
    _assert_problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_disabled_key_is_401_like_an_unknown_one(api_call, service_client) -> None:
    ServiceClient.objects.filter(pk=service_client.pk).update(disabled_at=timezone.now())
    _assert_problem(api_call(_body()), 401, "unauthenticated")


# --- 403 --------------------------------------------------------------------------------------


def test_an_audience_outside_the_keys_scope_is_403_and_audited(api_call) -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _, key = service_client_create(name="graph-only", audiences=["graph"])
    _assert_problem(api_call(_body(audience="arm"), key=key), 403, "audience_not_allowed")
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_DENIED)
    assert (event.actor_id, event.error_code, event.audience) == ("graph-only", "audience_not_allowed", "arm")


def test_a_partner_outside_the_keys_scope_is_403_whether_or_not_it_exists(api_call) -> None:
    fabrikam = Partner.objects.create(tenant_id=demo.FABRIKAM, display_name="Fabrikam")
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _, key = service_client_create(
        name="fabrikam-only", audiences=ALL_AUDIENCES, partner_tenant_ids=[fabrikam.tenant_id]
    )
    _assert_problem(api_call(_body(), key=key), 403, "partner_not_allowed")
    _assert_problem(api_call(_body(partner_tenant_id=str(uuid.uuid4())), key=key), 403, "partner_not_allowed")
    # Its own partner passes the scope check (and has no grant).
    _assert_problem(api_call(_body(partner_tenant_id=demo.FABRIKAM), key=key), 404, "no_grant")
    assert _denials() == ["no_grant", "partner_not_allowed", "partner_not_allowed"]


def test_a_partner_scoped_key_is_checked_in_the_hit_statement(
    postgres_only, consented_grant, client, api_call, django_assert_num_queries
) -> None:
    client.cookies.clear()  # the consent left a dashboard session; a service sends no cookie
    Partner.objects.create(tenant_id=demo.FABRIKAM, display_name="Fabrikam")
    _, other = service_client_create(
        name="fabrikam-only", audiences=ALL_AUDIENCES, partner_tenant_ids=[demo.FABRIKAM]
    )
    _, own = service_client_create(
        name="contoso-only", audiences=ALL_AUDIENCES, partner_tenant_ids=[demo.CONTOSO]
    )
    assert api_call(_body(), key=own).status_code == 200  # fills the cache
    # A cached token is there, but not for a key whose scope leaves the partner out.
    _assert_problem(api_call(_body(), key=other), 403, "partner_not_allowed")
    with django_assert_num_queries(2):
        assert api_call(_body(), key=own).status_code == 200
    assert _denials() == ["partner_not_allowed"]


def test_a_source_address_outside_the_allow_list_is_403(api_call, client) -> None:
    _, key = service_client_create(
        name="vnet-only", audiences=ALL_AUDIENCES, cidrs=["10.0.0.0/8", "fd00::/8"]
    )
    _assert_problem(api_call(_body(), key=key), 403, "address_not_allowed")
    response = client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200


def test_an_audience_the_partner_did_not_consent_to_is_403(consented_grant, api_call) -> None:
    ConsentGrant.objects.filter(pk=consented_grant.pk).update(audiences=["partner_center"])
    _assert_problem(api_call(_body(audience="graph")), 403, "audience_not_consented")
    assert _denials() == ["audience_not_consented"]


def test_a_customer_tenant_that_refuses_the_partner_is_403(consented_grant, api_call) -> None:
    response = api_call(_body(audience="graph", customer_tenant_id=demo.TAILSPIN))
    _assert_problem(response, 403, "customer_refused")


# --- 404 --------------------------------------------------------------------------------------


def test_an_unknown_partner_is_404_and_audited(api_call) -> None:
    _assert_problem(api_call(_body(partner_tenant_id=str(uuid.uuid4()))), 404, "unknown_partner")
    assert _denials() == ["unknown_partner"]


def test_a_partner_without_a_grant_is_404(application, api_call) -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _assert_problem(api_call(_body()), 404, "no_grant")


# --- 409 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["needs_renewal", "revoked", "expired"])
def test_a_grant_that_cannot_issue_is_409_naming_its_state(consented_grant, api_call, state) -> None:
    if state == "revoked":
        grant_revoke(grant=consented_grant, actor=Actor.system("test"))
    else:
        token_material = {"refresh_token": None} if state == "expired" else {}
        ConsentGrant.objects.filter(pk=consented_grant.pk).update(state=state, **token_material)
    problem = _assert_problem(api_call(_body()), 409, state)
    assert problem["state"] == state


# --- 423 --------------------------------------------------------------------------------------


def test_issuance_suspended_by_the_kill_switch_is_423(consented_grant, api_call) -> None:
    kill_switch_set(engaged=True, actor=Actor.staff(1), reason="incident")
    _assert_problem(api_call(_body()), 423, "issuance_suspended")


# --- 429 --------------------------------------------------------------------------------------


def test_the_per_client_rate_limit_is_429_with_retry_after(api_call, client) -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _, key = service_client_create(name="slow", audiences=ALL_AUDIENCES, rate_limit_per_minute=2)
    # Another client's budget is its own.
    assert client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert api_call(_body(), key=key).status_code == 404  # no grant, but counted
    response = api_call(_body(), key=key)
    _assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert api_call(_body(partner_tenant_id=str(uuid.uuid4()))).status_code == 404


# --- 503 --------------------------------------------------------------------------------------


def test_an_unavailable_identity_provider_is_503_with_retry_after(
    consented_grant, panel_settings, api_call
) -> None:
    panel_settings.control.add_fault("http_503", count=1)
    response = api_call(_body())
    _assert_problem(response, 503, "identity_provider_unavailable")
    assert int(response["Retry-After"]) >= 1
    assert api_call(_body()).status_code == 200


# --- the key and its bookkeeping ----------------------------------------------------------------


def test_last_use_is_recorded_at_most_once_a_minute(
    client, service_key, service_client, django_assert_num_queries
) -> None:
    assert service_client.last_used_at is None
    client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}")
    service_client.refresh_from_db()
    first = service_client.last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # the lookup; no UPDATE within the minute
        client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {service_key}")
    service_client.refresh_from_db()
    assert service_client.last_used_at == first


def test_only_a_digest_of_the_key_is_stored(service_key, service_client) -> None:
    secret = service_key.split("_", 2)[2]
    assert service_key.startswith(f"samcp_{service_client.key_id}_")
    assert len(secret) >= 43
    stored = " ".join(str(value) for value in ServiceClient.objects.values_list().get())
    assert secret not in stored


def test_every_refusal_code_has_a_problem_type() -> None:
    def subclasses(cls: type[broker.BrokerError]) -> set[type[broker.BrokerError]]:
        return {sub for direct in cls.__subclasses__() for sub in {direct, *subclasses(direct)}}

    assert {error.code for error in subclasses(broker.BrokerError)} <= set(PROBLEMS)


def test_an_unexpected_failure_is_an_opaque_500_even_with_debug_on(api_call, settings, monkeypatch) -> None:
    settings.DEBUG = True

    def broken(**kwargs):
        raise RuntimeError("internal detail that must not leave")

    monkeypatch.setattr("tokens.service_api.api.service_client_token_get", broken)
    response = api_call(_body())
    _assert_problem(response, 500, "internal_error")
    assert b"internal detail" not in response.content


def test_a_request_id_that_is_not_a_plain_token_is_replaced(consented_grant, api_call) -> None:
    assert api_call(_body(), HTTP_X_REQUEST_ID="a b\u00e9" * 30).status_code == 200
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_ISSUED)
    assert re.fullmatch(r"[0-9a-f]{32}", event.request_id)
