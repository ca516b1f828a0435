"""Every flow the panel uses, driven by the real MSAL library over real TLS against the sandbox."""

from __future__ import annotations

from hashlib import sha256

import jwt
import pytest

from sandbox import demo

PC, GRAPH, ARM = demo.PARTNER_CENTER_SCOPE, demo.GRAPH_SCOPE, demo.ARM_SCOPE


def _consent(sandbox, app, upn=demo.ADMIN_AGENT, *, mfa=True, response_mode="form_post", **flow_kwargs):
    flow = app.initiate_auth_code_flow(
        [PC, GRAPH, ARM], redirect_uri=demo.REDIRECT_URI, response_mode=response_mode, **flow_kwargs
    )
    return flow, sandbox.sign_in(flow["auth_uri"], upn, mfa=mfa)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_auth_code_with_pkce_gives_tokens_with_entra_claims(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    result = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])
    assert result["token_type"] == "Bearer"
    assert set(result) >= {
        "access_token",
        "refresh_token",
        "id_token",
        "client_info",
        "expires_in",
        "ext_expires_in",
    }
    assert result["scope"].split() == [PC, "openid", "profile", "offline_access"]
    assert 3600 <= result["expires_in"] <= 5400
    at = _claims(result["access_token"])
    assert at["aud"] == "https://api.partnercenter.microsoft.com"
    assert at["iss"] == f"https://sts.windows.net/{demo.CONTOSO}/"
    assert at["tid"] == demo.CONTOSO and at["upn"] == demo.ADMIN_AGENT and at["appid"] == demo.CLIENT_ID
    assert at["amr"] == ["pwd", "mfa"] and at["scp"] == "user_impersonation" and at["ver"] == "1.0"
    idt = result["id_token_claims"]
    assert idt["aud"] == demo.CLIENT_ID and idt["iss"] == f"{sandbox.base_url}/{demo.CONTOSO}/v2.0"
    assert (
        idt["preferred_username"] == demo.ADMIN_AGENT
        and idt["nonce"] == sha256(flow["nonce"].encode()).hexdigest()
    )
    # v2.0 ID tokens carry neither amr nor acr: MFA is read from the v1.0 access token.
    assert "amr" not in idt and "acr" not in idt and idt["ver"] == "2.0"


def test_tokens_verify_against_the_published_jwks(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    result = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])
    jwks = sandbox.http().get(f"{sandbox.base_url}/{demo.CONTOSO}/discovery/v2.0/keys", timeout=5).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    jwt.decode(
        result["id_token"],
        key,
        algorithms=["RS256"],
        audience=demo.CLIENT_ID,
        issuer=f"{sandbox.base_url}/{demo.CONTOSO}/v2.0",
    )


def test_silent_token_for_a_second_resource_uses_the_same_refresh_token(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])
    account = app.get_accounts()[0]
    assert account["username"] == demo.ADMIN_AGENT
    graph = app.acquire_token_silent([GRAPH], account=account)
    assert _claims(graph["access_token"])["aud"] == "https://graph.microsoft.com"
    counters = sandbox.control.counters()
    assert counters["token_requests"]["by_grant_type"] == {"authorization_code": 1, "refresh_token": 1}
    assert counters["tokens_issued"]["by_resource"] == {
        "https://api.partnercenter.microsoft.com": 1,
        "https://graph.microsoft.com": 1,
    }
    # The PC token is still cached by MSAL: no third request reaches the identity provider.
    assert app.acquire_token_silent([PC], account=account)["token_source"] == "cache"
    assert sandbox.control.counters()["token_requests"]["total"] == 2


def test_customer_tenant_token_through_gdap(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    rt = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["refresh_token"]
    customer_app = sandbox.msal_app(tenant=demo.ADATUM)
    result = customer_app.acquire_token_by_refresh_token(rt, scopes=[GRAPH])
    claims = _claims(result["access_token"])
    assert claims["tid"] == demo.ADATUM and claims["oid"] != "" and claims["idp"].endswith(f"{demo.CONTOSO}/")
    organization = (
        sandbox.http()
        .get(
            f"{sandbox.base_url}/v1.0/organization",
            headers={"Authorization": f"Bearer {result['access_token']}"},
            timeout=5,
        )
        .json()
    )
    assert organization["value"][0]["displayName"] == "Adatum Corporation"


def test_customer_without_gdap_fails_as_entra_does(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    rt = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["refresh_token"]
    result = sandbox.msal_app(tenant=demo.TAILSPIN).acquire_token_by_refresh_token(rt, scopes=[GRAPH])
    assert result["error"] == "invalid_grant" and result["error_codes"] == [90099]


def test_sales_agent_cannot_act_in_a_gdap_customer(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app, demo.SALES_AGENT)
    rt = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["refresh_token"]
    result = sandbox.msal_app(tenant=demo.NORTHWIND).acquire_token_by_refresh_token(rt, scopes=[GRAPH])
    assert result["error_codes"] == [50020]


def test_client_assertion_with_certificate(sandbox):
    app = sandbox.msal_app(credential=sandbox.certificate_credential())
    flow, response = _consent(sandbox, app)
    result = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])
    assert _claims(result["access_token"])["appidacr"] == "2"
    app_only = sandbox.msal_app(tenant=demo.ADATUM, credential=sandbox.certificate_credential())
    result = app_only.acquire_token_for_client([demo.GRAPH_DEFAULT_SCOPE])
    assert _claims(result["access_token"])["idtyp"] == "app"
    assert "refresh_token" not in result and "scope" not in result


def test_client_credentials_with_secret(sandbox):
    result = sandbox.msal_app(tenant=demo.ADATUM).acquire_token_for_client([demo.GRAPH_DEFAULT_SCOPE])
    assert result["token_type"] == "Bearer" and isinstance(result["expires_in"], int)


@pytest.mark.parametrize("response_mode", ["query", "form_post"])
@pytest.mark.filterwarnings("ignore:response_mode=:UserWarning")
def test_response_modes(sandbox, response_mode):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app, response_mode=response_mode)
    assert set(response) >= {"code", "state", "client_info"}
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])


def test_cancel_returns_access_denied_with_state(sandbox):
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC], redirect_uri=demo.REDIRECT_URI, response_mode="form_post")
    response = sandbox.sign_in(flow["auth_uri"], accept=False)
    assert response["error"] == "access_denied" and response["error_subcode"] == "cancel"
    assert response["state"] == flow["state"] and response["error_description"].startswith("AADSTS65004:")
    assert app.acquire_token_by_auth_code_flow(flow, response)["error"] == "access_denied"


def test_prompt_none_uses_the_browser_session(sandbox):
    app = sandbox.msal_app()
    browser = sandbox.http()
    flow = app.initiate_auth_code_flow(
        [PC], redirect_uri=demo.REDIRECT_URI, prompt="none", response_mode="form_post"
    )
    answer = browser.get(flow["auth_uri"], timeout=5)
    assert 'name="error" value="login_required"' in answer.text


def test_v1_endpoint_with_resource(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    rt = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["refresh_token"]
    answer = sandbox.token_request(
        v1=True,
        grant_type="refresh_token",
        client_id=demo.CLIENT_ID,
        client_secret=demo.CLIENT_SECRET,
        refresh_token=rt,
        resource="https://api.partnercenter.microsoft.com",
        scope="openid",
    ).json()
    assert (
        answer["resource"] == "https://api.partnercenter.microsoft.com"
        and answer["scope"] == "user_impersonation"
    )
    assert isinstance(answer["expires_in"], str) and "id_token" in answer and "refresh_token" in answer


def test_partner_center_and_graph_stubs(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app)
    pc = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["access_token"]
    http = sandbox.http()
    customers = http.get(
        f"{sandbox.base_url}/v1/customers", headers={"Authorization": f"Bearer {pc}"}, timeout=5
    )
    names = [c["companyProfile"]["companyName"] for c in customers.json()["items"]]
    # Each of Contoso's customers once; Fabrikam's are not listed.
    assert len(names) == len(set(names)) == demo.GDAP_CONTOSO_COUNT
    assert {"Adatum Corporation", "Northwind Traders"} <= set(names) and "Tailspin Toys" not in names
    profile = http.get(
        f"{sandbox.base_url}/v1/profiles/organization", headers={"Authorization": f"Bearer {pc}"}, timeout=5
    )
    assert profile.json()["companyName"] == "Contoso Partner"
    me = http.get(f"{sandbox.base_url}/v1.0/me", headers={"Authorization": f"Bearer {pc}"}, timeout=5)
    assert me.status_code == 401  # wrong audience for Graph
    graph = app.acquire_token_silent([GRAPH], account=app.get_accounts()[0])["access_token"]
    me = http.get(f"{sandbox.base_url}/v1.0/me", headers={"Authorization": f"Bearer {graph}"}, timeout=5)
    assert me.json()["userPrincipalName"] == demo.ADMIN_AGENT


def test_partner_center_refuses_tokens_without_mfa(sandbox):
    app = sandbox.msal_app()
    flow, response = _consent(sandbox, app, mfa=False)
    pc = app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])["access_token"]
    answer = sandbox.http().get(
        f"{sandbox.base_url}/v1/customers", headers={"Authorization": f"Bearer {pc}"}, timeout=5
    )
    assert answer.status_code == 401 and answer.json()["code"] == "900421"
