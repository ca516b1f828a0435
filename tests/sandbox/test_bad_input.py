"""Bad input to every endpoint gets Entra's error shape and status: never a 500 or a stack trace."""

from __future__ import annotations

import base64
import time
import uuid

import jwt
import pytest

from sandbox import demo

PC = demo.PARTNER_CENTER_SCOPE
GOOD = {"client_id": demo.CLIENT_ID, "client_secret": demo.CLIENT_SECRET}


def _error(answer, status, error, code):
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error and body["error_codes"] == [code], body
    assert "Traceback" not in answer.text
    assert answer.headers["Cache-Control"] == "no-store, no-cache"
    return body


@pytest.mark.parametrize(
    ("data", "status", "error", "code"),
    [
        ({}, 400, "invalid_request", 900144),
        ({"grant_type": "password", **GOOD}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": "client_credentials", "scope": PC}, 400, "invalid_request", 900144),
        (
            {
                "grant_type": "client_credentials",
                "client_id": str(uuid.uuid4()),
                "client_secret": "x",
                "scope": PC,
            },
            400,
            "unauthorized_client",
            700016,
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": demo.CLIENT_ID,
                "client_secret": "wrong",
                "scope": PC,
            },
            401,
            "invalid_client",
            7000215,
        ),
        (
            {"grant_type": "client_credentials", "client_id": demo.CLIENT_ID, "scope": PC},
            401,
            "invalid_client",
            7000218,
        ),
        (
            {
                "grant_type": "authorization_code",
                **GOOD,
                "code": "garbage",
                "redirect_uri": demo.REDIRECT_URI,
            },
            400,
            "invalid_grant",
            9002313,
        ),
        ({"grant_type": "refresh_token", **GOOD, "refresh_token": "garbage"}, 400, "invalid_grant", 9002313),
        ({"grant_type": "client_credentials", **GOOD, "scope": PC}, 400, "invalid_scope", 1002012),
        (
            {"grant_type": "client_credentials", **GOOD, "scope": "https://unknown.example/.default"},
            400,
            "invalid_resource",
            500011,
        ),
        (
            {"grant_type": "client_credentials", **GOOD, "resource": "https://graph.microsoft.com"},
            400,
            "invalid_request",
            901002,
        ),
    ],
)
def test_token_endpoint_errors(sandbox, data, status, error, code):
    _error(sandbox.token_request(demo.ADATUM, **data), status, error, code)


def test_repeated_parameter(sandbox):
    body = f"grant_type=client_credentials&client_id={demo.CLIENT_ID}&client_id={demo.CLIENT_ID}"
    answer = sandbox.http().post(
        f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    _error(answer, 400, "invalid_request", 9000411)


def test_unknown_tenant(sandbox):
    _error(
        sandbox.token_request("nowhere.onmicrosoft.com", grant_type="client_credentials", **GOOD),
        400,
        "invalid_request",
        90002,
    )
    answer = sandbox.http().get(
        f"{sandbox.base_url}/nowhere.example/v2.0/.well-known/openid-configuration", timeout=5
    )
    _error(answer, 400, "invalid_tenant", 90002)


def test_non_form_and_binary_bodies(sandbox):
    for body in (b"\xff\xfe\x00garbage", b'{"grant_type": "client_credentials"}'):
        answer = sandbox.http().post(
            f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token", data=body, timeout=5
        )
        _error(answer, 400, "invalid_request", 900144)


def test_get_on_token_endpoint(sandbox):
    answer = sandbox.http().get(f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token", timeout=5)
    assert answer.status_code == 405 and answer.json()["error"] == "invalid_request"


def test_basic_auth_is_accepted(sandbox):
    basic = base64.b64encode(f"{demo.CLIENT_ID}:{demo.CLIENT_SECRET}".encode()).decode()
    answer = sandbox.http().post(
        f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": demo.GRAPH_DEFAULT_SCOPE},
        headers={"Authorization": f"Basic {basic}"},
        timeout=5,
    )
    assert answer.status_code == 200


def _code(sandbox, **extra):
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC], redirect_uri=demo.REDIRECT_URI, response_mode="form_post")
    return flow, sandbox.sign_in(flow["auth_uri"])["code"]


def _redeem(sandbox, code, verifier, redirect_uri=demo.REDIRECT_URI, tenant=demo.CONTOSO):
    return sandbox.token_request(
        tenant,
        grant_type="authorization_code",
        **GOOD,
        code=code,
        code_verifier=verifier,
        redirect_uri=redirect_uri,
        scope=f"{PC} openid offline_access",
    )


def test_code_is_single_use(sandbox):
    flow, code = _code(sandbox)
    assert _redeem(sandbox, code, flow["code_verifier"]).status_code == 200
    _error(_redeem(sandbox, code, flow["code_verifier"]), 400, "invalid_grant", 54005)


def test_code_needs_the_right_verifier_redirect_tenant_and_age(sandbox):
    flow, code = _code(sandbox)
    _error(_redeem(sandbox, code, "x" * 43), 400, "invalid_grant", 501481)
    flow, code = _code(sandbox)
    _error(
        _redeem(
            sandbox, code, flow["code_verifier"], redirect_uri="http://localhost:8000/onboarding/callback/"
        ),
        400,
        "invalid_grant",
        50011,
    )
    flow, code = _code(sandbox)
    _error(_redeem(sandbox, code, flow["code_verifier"], tenant=demo.ADATUM), 400, "invalid_grant", 700005)
    flow, code = _code(sandbox)
    sandbox.control.advance_clock(601)
    _error(_redeem(sandbox, code, flow["code_verifier"]), 400, "invalid_grant", 70008)


def _assertion(sandbox, **overrides):
    now = int(time.time())
    claims = {
        "aud": f"{sandbox.base_url}/{demo.ADATUM}/oauth2/v2.0/token",
        "iss": demo.CLIENT_ID,
        "sub": demo.CLIENT_ID,
        "jti": str(uuid.uuid4()),
        "exp": now + 600,
        "iat": now,
        **overrides,
    }
    thumb = base64.urlsafe_b64encode(bytes.fromhex(demo.CERT_SHA1_THUMBPRINT)).decode()
    return jwt.encode(claims, demo.KEY_PATH.read_text(), algorithm="RS256", headers={"x5t": thumb})


def _with_assertion(sandbox, assertion):
    return sandbox.token_request(
        demo.ADATUM,
        grant_type="client_credentials",
        client_id=demo.CLIENT_ID,
        scope=demo.GRAPH_DEFAULT_SCOPE,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )


def test_client_assertion_checks(sandbox):
    assertion = _assertion(sandbox)
    assert _with_assertion(sandbox, assertion).status_code == 200
    _error(_with_assertion(sandbox, assertion), 401, "invalid_client", 50013)  # replayed jti
    _error(_with_assertion(sandbox, "not.a.jwt"), 400, "invalid_request", 50027)
    _error(
        _with_assertion(sandbox, _assertion(sandbox, aud="https://elsewhere/token")),
        401,
        "invalid_client",
        50013,
    )
    _error(_with_assertion(sandbox, _assertion(sandbox, iss="someone")), 401, "invalid_client", 700021)
    _error(
        _with_assertion(sandbox, _assertion(sandbox, exp=int(time.time()) - 3600)),
        401,
        "invalid_client",
        700024,
    )
    _error(_with_assertion(sandbox, _assertion(sandbox)[:-4] + "AAAA"), 401, "invalid_client", 700027)


def _authorize(sandbox, **params):
    query = {
        "client_id": demo.CLIENT_ID,
        "response_type": "code",
        "redirect_uri": demo.REDIRECT_URI,
        "scope": f"{PC} openid",
        "state": "s1",
        **params,
    }
    query = {k: v for k, v in query.items() if v is not None}
    return sandbox.http().get(
        f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/v2.0/authorize",
        params=query,
        allow_redirects=False,
        timeout=5,
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"client_id": str(uuid.uuid4())}, 700016),
        ({"client_id": None}, 900144),
        ({"redirect_uri": "http://evil.example/cb"}, 50011),
        ({"redirect_uri": None}, 900144),
    ],
)
def test_authorize_errors_about_client_or_redirect_are_shown_on_the_page(sandbox, params, code):
    answer = _authorize(sandbox, **params)
    assert answer.status_code == 400 and f"AADSTS{code}" in answer.text and "Location" not in answer.headers


@pytest.mark.parametrize(
    ("params", "error", "code"),
    [
        ({"response_type": "token"}, "unsupported_response_type", 700054),
        ({"scope": None}, "invalid_request", 900144),
        ({"scope": "https://unknown.example/x"}, "invalid_resource", 500011),
        ({"scope": "https://graph.microsoft.com/Mail.Send"}, "invalid_scope", 70011),
        ({"prompt": "sometimes"}, "invalid_request", 90015),
        ({"code_challenge_method": "S512", "code_challenge": "a" * 43}, "invalid_request", 90015),
    ],
)
def test_authorize_errors_go_back_to_the_redirect_uri(sandbox, params, error, code):
    answer = _authorize(sandbox, **params)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(demo.REDIRECT_URI) and f"error={error}" in location and "state=s1" in location
    assert f"AADSTS{code}" in location


def test_authorize_repeated_parameter(sandbox):
    url = (
        f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/v2.0/authorize?client_id={demo.CLIENT_ID}&response_type=code"
        f"&redirect_uri={demo.REDIRECT_URI}&scope=openid&scope=profile&state=s1"
    )
    answer = sandbox.http().get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302 and "AADSTS9000411" in answer.headers["Location"]


def test_sign_in_page_refuses_unknown_users_and_stale_forms(sandbox):
    answer = _authorize(sandbox)
    assert answer.status_code == 200 and '<label for="upn">' in answer.text
    stale = sandbox.http().post(
        f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/v2.0/authorize",
        data={"request": "nope", "action": "accept"},
        timeout=5,
    )
    assert stale.status_code == 400 and "AADSTS90014" in stale.text
    from sandbox.control_client import parse_form

    _, fields = parse_form(answer.text)
    unknown = sandbox.http().post(
        f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/v2.0/authorize",
        data={"request": fields["request"], "upn": "ghost@x", "action": "accept"},
        timeout=5,
    )
    assert unknown.status_code == 400 and "AADSTS50034" in unknown.text


@pytest.mark.parametrize("path", ["/v1/customers", "/v1.0/me", "/v1.0/organization"])
def test_resources_refuse_missing_or_forged_tokens(sandbox, path):
    http = sandbox.http()
    assert http.get(f"{sandbox.base_url}{path}", timeout=5).status_code == 401
    forged = jwt.encode(
        {"aud": "https://graph.microsoft.com", "exp": 2**31}, demo.KEY_PATH.read_text(), algorithm="RS256"
    )
    answer = http.get(f"{sandbox.base_url}{path}", headers={"Authorization": f"Bearer {forged}"}, timeout=5)
    assert answer.status_code == 401 and "Traceback" not in answer.text


def test_unknown_path_is_json_404(sandbox):
    answer = sandbox.http().get(f"{sandbox.base_url}/nothing/here", timeout=5)
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"
