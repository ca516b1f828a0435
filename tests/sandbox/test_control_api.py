"""Every control-API scenario produces Entra's documented error, shape and status."""

from __future__ import annotations

import time

import msal
import pytest
import requests

from sandbox import demo
from sandbox.control_client import SandboxError
from tests.fixtures.renewal import wait_for
from tests.sandbox.test_conformance import _get, _signed_in

PC, GRAPH = demo.PARTNER_CENTER_SCOPE, demo.GRAPH_SCOPE
ERROR_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}


@pytest.fixture
def consented(sandbox):
    """(app, refresh token) after the admin agent consented with MFA."""
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC, GRAPH], redirect_uri=demo.REDIRECT_URI, response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, sandbox.sign_in(flow["auth_uri"]), scopes=[PC])
    return app, result["refresh_token"]


def _refresh(sandbox, rt, scopes=(GRAPH,), tenant=demo.CONTOSO):
    # A fresh app per call: MSAL caches 400 answers for 60 s (entra-protocol.md 7.6).
    return sandbox.msal_app(tenant=tenant).acquire_token_by_refresh_token(rt, scopes=list(scopes))


def _assert_error(result, error, code, suberror=None):
    assert ERROR_KEYS <= set(result), result
    assert result["error"] == error and result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert "Trace ID: " in result["error_description"] and "Correlation ID: " in result["error_description"]
    assert result.get("suberror") == suberror


def test_revoked_sessions_give_50173_bad_token(sandbox, consented):
    _, rt = consented
    sandbox.control.revoke_sessions(demo.ADMIN_AGENT)
    _assert_error(_refresh(sandbox, rt), "invalid_grant", 50173, "bad_token")


def test_inactive_refresh_tokens_give_700082(sandbox, consented):
    _, rt = consented
    assert sandbox.control.expire_refresh_tokens(user=demo.ADMIN_AGENT)["expired"] == 1
    result = _refresh(sandbox, rt)
    _assert_error(result, "invalid_grant", 700082)
    assert "inactive for 90.00:00:00" in result["error_description"]


def test_clock_advance_ages_refresh_tokens_and_the_newest_survives(sandbox, consented):
    _, rt = consented
    sandbox.control.advance_clock(80 * 86400)
    newer = _refresh(sandbox, rt)["refresh_token"]
    sandbox.control.advance_clock(20 * 86400)
    _assert_error(_refresh(sandbox, rt), "invalid_grant", 700082)  # the old one kept its own clock
    assert "access_token" in _refresh(sandbox, newer, scopes=(PC,))


def test_old_refresh_token_stays_valid_unless_strict_rotation(sandbox, consented):
    _, rt = consented
    assert "access_token" in _refresh(sandbox, rt)
    assert "access_token" in _refresh(sandbox, rt, scopes=(PC,))
    sandbox.control.settings(strict_refresh_token_rotation=True)
    _assert_error(_refresh(sandbox, rt), "invalid_grant", 70000, "bad_token")


def test_mfa_requirement_gives_50076_and_block_gives_53003(sandbox):
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC, GRAPH], redirect_uri=demo.REDIRECT_URI, response_mode="form_post")
    rt = app.acquire_token_by_auth_code_flow(flow, sandbox.sign_in(flow["auth_uri"], mfa=False), scopes=[PC])[
        "refresh_token"
    ]
    sandbox.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    result = _refresh(sandbox, rt)
    _assert_error(result, "invalid_grant", 50076, "basic_action")
    assert "capolids" in result["claims"]
    sandbox.control.tenant_policy(demo.CONTOSO, require_mfa=False, block=True)
    _assert_error(_refresh(sandbox, rt, scopes=(PC,)), "invalid_grant", 53003, "message_only")


def test_removed_consent_gives_65001(sandbox, consented):
    _, rt = consented
    sandbox.control.remove_consent(demo.ADATUM, demo.CLIENT_ID)
    _assert_error(_refresh(sandbox, rt, tenant=demo.ADATUM), "invalid_grant", 65001, "consent_required")
    sandbox.control.grant_consent(demo.ADATUM, demo.CLIENT_ID)
    assert "access_token" in _refresh(sandbox, rt, scopes=(PC,), tenant=demo.ADATUM)


@pytest.mark.parametrize(("action", "code"), [("expire_secret", 7000222), ("delete_secret", 7000215)])
def test_secret_expired_or_deleted_gives_401(sandbox, action, code):
    getattr(sandbox.control, action)(demo.CLIENT_ID, demo.SECRET_KEY_ID)
    answer = sandbox.token_request(
        demo.ADATUM,
        grant_type="client_credentials",
        client_id=demo.CLIENT_ID,
        client_secret=demo.CLIENT_SECRET,
        scope=demo.GRAPH_DEFAULT_SCOPE,
    )
    assert answer.status_code == 401
    _assert_error(answer.json(), "invalid_client", code)


def _cc(sandbox, timeout=10):
    return sandbox.http().post(
        f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": demo.CLIENT_ID,
            "client_secret": demo.CLIENT_SECRET,
            "scope": demo.GRAPH_DEFAULT_SCOPE,
        },
        timeout=timeout,
    )


def test_fault_429_is_plain_text_with_retry_after(sandbox):
    sandbox.control.add_fault("http_429", count=1, retry_after=7)
    answer = _cc(sandbox)
    assert (answer.status_code, answer.text, answer.headers["Retry-After"]) == (429, "Too Many Requests", "7")
    assert _cc(sandbox).status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_503", 503)])
def test_fault_5xx_for_a_count_reaches_msal_as_service_error(sandbox, kind, status):
    sandbox.control.add_fault(kind, count=2)
    assert _cc(sandbox).status_code == status
    with pytest.raises(msal.exceptions.MsalServiceError):
        sandbox.msal_app(tenant=demo.ADATUM).acquire_token_for_client([demo.GRAPH_DEFAULT_SCOPE])
    assert _cc(sandbox).status_code == 200
    assert sandbox.control.counters()["faults_injected"] == {kind: 2}


def test_fault_window_latency_drop_and_timeout(sandbox):
    sandbox.control.add_fault("latency", seconds=30, delay_seconds=0.3)
    answer = _cc(sandbox)
    assert answer.status_code == 200 and answer.elapsed.total_seconds() >= 0.3
    sandbox.control.clear_faults()
    sandbox.control.add_fault("drop", count=1)
    with pytest.raises(requests.ConnectionError):
        _cc(sandbox)

    def graph_tokens_issued() -> int:
        return sandbox.control.counters()["tokens_issued"]["by_resource"].get(
            "https://graph.microsoft.com", 0
        )

    before = graph_tokens_issued()
    sandbox.control.add_fault("timeout", count=1, delay_seconds=2)
    with pytest.raises(requests.Timeout):
        _cc(sandbox, timeout=0.5)
    # The sandbox, like a slow server, still answers the request the client gave up on: wait for it,
    # or its token lands in the counters of whichever test runs two seconds later.
    wait_for(
        lambda: graph_tokens_issued() == before + 1, timeout=10, message="the timed-out request never ended"
    )


def test_counters_count_token_requests(sandbox):
    _cc(sandbox)
    sandbox.token_request(
        grant_type="client_credentials",
        client_id=demo.CLIENT_ID,
        client_secret="wrong",
        scope=demo.GRAPH_DEFAULT_SCOPE,
    )
    counters = sandbox.control.counters()
    assert counters["token_requests"]["total"] == 2
    assert counters["token_requests"]["by_status"] == {"200": 1, "401": 1}
    assert counters["token_requests"]["by_client"] == {demo.CLIENT_ID: 2}
    assert counters["tokens_issued"]["by_tenant"] == {demo.ADATUM: 1}


def test_control_api_rejects_bad_input(sandbox):
    with pytest.raises(SandboxError, match="400"):
        sandbox.control.add_fault("explode")
    with pytest.raises(SandboxError, match="404"):
        sandbox.control.revoke_sessions("nobody@example.com")
    with pytest.raises(SandboxError, match="400"):
        sandbox.control.advance_clock(-5)
    answer = sandbox.http().post(f"{sandbox.base_url}/_sandbox/faults", data="[1", timeout=5)
    assert answer.status_code == 400 and answer.json()["error"] == "bad_request"


def test_fault_mfa_required_makes_partner_center_refuse_an_mfa_token_as_it_refuses_one_without(sandbox):
    _, result = _signed_in(sandbox)
    sandbox.control.add_fault("mfa_required", endpoint="partner_center", count=1)
    refused = _get(sandbox, "/v1/profiles/organization", result["access_token"])
    assert refused.status_code == 401 and refused.json()["code"] == "900421"
    assert _get(sandbox, "/v1/profiles/organization", result["access_token"]).status_code == 200
    assert sandbox.control.counters()["faults_injected"] == {"mfa_required": 1}


@pytest.mark.parametrize(("kind", "endpoint"), [("mfa_required", "resource"), ("http_500", "partner_center")])
def test_fault_mfa_required_goes_with_the_partner_center_endpoint_only(sandbox, kind, endpoint):
    with pytest.raises(SandboxError, match="400"):
        sandbox.control.add_fault(kind, endpoint=endpoint)


@pytest.mark.parametrize(
    "call, status",
    [
        (lambda c: c.service_principal(demo.CONTOSO, demo.CLIENT_ID, "paused"), 400),
        (lambda c: c.service_principal("no-such-tenant.example", demo.CLIENT_ID, "disabled"), 404),
        (
            lambda c: c.service_principal(demo.CONTOSO, "00000000-0000-0000-0000-000000000009", "disabled"),
            404,
        ),
        (lambda c: c.consent_state(demo.CONTOSO, "00000000-0000-0000-0000-000000000009"), 404),
        (lambda c: c.consent_state("no-such-tenant.example", demo.CLIENT_ID), 404),
    ],
)
def test_service_principal_and_consent_state_refuse_bad_input_and_change_nothing(sandbox, call, status):
    before = sandbox.control.status()
    with pytest.raises(SandboxError, match=f": {status} "):
        call(sandbox.control)
    after = sandbox.control.status()
    before.pop("now"), after.pop("now")
    assert after == before


def test_fault_aadsts_answers_one_tenants_token_requests_with_any_code(sandbox):
    app, result = _signed_in(sandbox)
    sandbox.control.add_fault(
        "aadsts", endpoint="token", code=4242424, error="server_misconfigured", tenant=demo.CONTOSO, count=1
    )
    refused = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[PC])
    assert refused["error"] == "server_misconfigured" and refused["error_codes"] == [4242424]
    # A new MSAL object: this one's throttling cache would replay the 400 for a minute by itself.
    again = sandbox.msal_app().acquire_token_by_refresh_token(result["refresh_token"], scopes=[PC])
    assert "access_token" in again
    assert sandbox.control.counters()["faults_injected"] == {"aadsts": 1}


def test_fault_aadsts_for_another_tenant_leaves_this_one_alone(sandbox):
    app, result = _signed_in(sandbox)
    sandbox.control.add_fault("aadsts", endpoint="token", code=4242424, tenant=demo.FABRIKAM, count=1)
    assert "access_token" in app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[PC])


@pytest.mark.parametrize(
    "spec",
    [
        {"endpoint": "authorize", "code": 4242424},
        {"endpoint": "token"},
        {"endpoint": "token", "code": "4242424"},
        {"endpoint": "token", "code": 4242424, "error": "no spaces allowed"},
        {"endpoint": "token", "code": 4242424, "tenant": 7},
    ],
)
def test_fault_aadsts_refuses_bad_specs(sandbox, spec):
    with pytest.raises(SandboxError, match="400"):
        sandbox.control.add_fault("aadsts", **spec)


def test_a_reset_drops_a_request_still_held_by_a_timeout_fault(sandbox):
    """A request the client gave up on must not redeem against, or count in, the state a reset starts
    (the next test's): when its delay ends after a reset, it is dropped."""
    sandbox.control.add_fault("timeout", count=1, delay_seconds=1)
    with pytest.raises(requests.Timeout):
        _cc(sandbox, timeout=0.3)
    sandbox.control.reset()
    time.sleep(1.5)  # past the fault's delay: the held request has ended one way or the other
    counters = sandbox.control.counters()
    assert counters["tokens_issued"]["by_resource"] == {} and counters["token_requests"]["total"] == 0
    assert _cc(sandbox).status_code == 200  # the fresh state answers as usual
