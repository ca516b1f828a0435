"""The rows of docs/sandbox.md's conformance table: each behaviour through the sandbox's public
interface (HTTP, and MSAL where a client would use it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from sandbox import demo
from sandbox.control_client import SandboxError, start_sandbox
from tests.fixtures.sandbox import RunningSandbox

PC, GRAPH, ARM = demo.PARTNER_CENTER_SCOPE, demo.GRAPH_SCOPE, demo.ARM_SCOPE
PC_URI, GRAPH_URI, ARM_URI = (s.rpartition("/")[0] for s in (PC, GRAPH, ARM))


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _consent(sandbox, app, upn=demo.ADMIN_AGENT, *, mfa=True, scopes=None, **kwargs):
    flow = app.initiate_auth_code_flow(
        scopes or demo.CONSENT_SCOPES, redirect_uri=demo.REDIRECT_URI, response_mode="form_post", **kwargs
    )
    return flow, sandbox.sign_in(flow["auth_uri"], upn, mfa=mfa)


def _signed_in(sandbox, upn=demo.ADMIN_AGENT, *, mfa=True, tenant=demo.CONTOSO):
    """(MSAL app, PC token result) after a consent with the panel's named scopes."""
    app = sandbox.msal_app(tenant=tenant)
    flow, response = _consent(sandbox, app, upn, mfa=mfa)
    return app, app.acquire_token_by_auth_code_flow(flow, response, scopes=[PC])


def _get(sandbox, path, token, **headers):
    return sandbox.http().get(
        f"{sandbox.base_url}{path}", headers={"Authorization": f"Bearer {token}", **headers}, timeout=5
    )


def _redirect_error(sandbox, auth_uri):
    """The error fields an authorize request is redirected with (no page shown)."""
    answer = sandbox.http().get(auth_uri, timeout=5, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:300]
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


# --- tokens -------------------------------------------------------------------------------------


def test_v1_id_tokens_keep_amr(sandbox):
    _, result = _signed_in(sandbox)
    answer = sandbox.token_request(
        v1=True,
        grant_type="refresh_token",
        client_id=demo.CLIENT_ID,
        client_secret=demo.CLIENT_SECRET,
        refresh_token=result["refresh_token"],
        resource=PC_URI,
        scope="openid",
    ).json()
    assert (
        _claims(answer["id_token"])["amr"] == ["pwd", "mfa"] and _claims(answer["id_token"])["ver"] == "1.0"
    )


@pytest.mark.parametrize("mfa, amr", [(True, ["pwd", "mfa"]), (False, ["pwd"])])
def test_access_tokens_are_v1_for_all_three_resources_and_keep_the_sign_in_amr(sandbox, mfa, amr):
    app, result = _signed_in(sandbox, mfa=mfa)
    assert "amr" not in result["id_token_claims"]
    sandbox.control.advance_clock(7 * 86400)  # a week later, every token comes from the refresh token
    rt = result["refresh_token"]
    tokens = {
        uri: app.acquire_token_by_refresh_token(rt, scopes=[s])
        for uri, s in ((PC_URI, PC), (GRAPH_URI, GRAPH), (ARM_URI, ARM))
    }
    assert sandbox.control.counters()["token_requests"]["by_grant_type"]["refresh_token"] == 3
    for uri, token in tokens.items():
        claims = _claims(token["access_token"])
        assert claims["ver"] == "1.0" and claims["aud"] == uri
        assert claims["iss"] == f"https://sts.windows.net/{demo.CONTOSO}/" and claims["tid"] == demo.CONTOSO
        assert claims["upn"] == demo.ADMIN_AGENT and claims["oid"] and claims["scp"]
        assert claims["amr"] == amr
    assert "Directory.AccessAsUser.All" in _claims(tokens[GRAPH_URI]["access_token"])["scp"].split()


# --- scopes ---------------------------------------------------------------------------------------


def test_default_mixed_with_named_scopes_is_invalid_scope_70011(sandbox):
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([demo.GRAPH_DEFAULT_SCOPE, PC], redirect_uri=demo.REDIRECT_URI)
    error = _redirect_error(sandbox, flow["auth_uri"])
    assert error["error"] == "invalid_scope" and error["error_description"].startswith("AADSTS70011:")
    assert error["state"] == flow["state"]


def test_token_request_spanning_two_resources_is_28000(sandbox):
    app, result = _signed_in(sandbox)
    answer = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[PC, GRAPH])
    assert answer["error"] == "invalid_scope" and answer["error_codes"] == [28000]


def test_v2_refuses_amr_values(sandbox):
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC], redirect_uri=demo.REDIRECT_URI)
    error = _redirect_error(sandbox, f"{flow['auth_uri']}&amr_values=mfa")
    assert error["error"] == "invalid_request" and error["error_description"].startswith("AADSTS90015:")


def test_v1_amr_values_mfa_requires_mfa_at_sign_in(sandbox):
    query = urlencode(
        {
            "client_id": demo.CLIENT_ID,
            "response_type": "code",
            "redirect_uri": demo.REDIRECT_URI,
            "resource": PC_URI,
            "amr_values": "mfa",
        }
    )
    uri = f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/authorize?{query}"
    with pytest.raises(SandboxError, match="400"):
        sandbox.sign_in(uri, mfa=False)
    assert "code" in sandbox.sign_in(uri, mfa=True)


# --- admin consent --------------------------------------------------------------------------------


def _admin_consent_uri(sandbox, tenant=demo.WOODGROVE, **params):
    query = {
        "client_id": demo.CLIENT_ID,
        "scope": " ".join(demo.CONSENT_SCOPES),
        "redirect_uri": demo.ADMIN_CONSENT_REDIRECT_URI,
        "state": "s1",
        **params,
    }
    return f"{sandbox.base_url}/{tenant}/v2.0/adminconsent?{urlencode(query)}"


def test_non_admin_is_refused_admin_consent_permissions_without_tenant_wide_consent(sandbox):
    app = sandbox.msal_app(tenant=demo.WOODGROVE)
    flow, response = _consent(sandbox, app, demo.WOODGROVE_AGENT)
    assert response["error"] == "consent_required" and response["error_description"].startswith(
        "AADSTS90094:"
    )
    assert response["state"] == flow["state"] and "code" not in response
    state = sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)
    assert state["admin_consent"] == [] and state["user_consents"] == {}


@pytest.mark.parametrize(
    "scope, needs_admin",
    [
        (PC, True),
        (GRAPH, True),
        ("https://graph.microsoft.com/User.Read", False),
        (ARM, True),
        (demo.GDAP_READ_SCOPE, True),
    ],
)
def test_which_permissions_need_admin_consent(sandbox, scope, needs_admin):
    app = sandbox.msal_app(tenant=demo.WOODGROVE)
    _, response = _consent(sandbox, app, demo.WOODGROVE_AGENT, scopes=[scope])
    assert ("code" not in response) is needs_admin


def test_admin_consent_endpoint_grants_tenant_wide_then_the_agent_consents(sandbox):
    response = sandbox.sign_in(_admin_consent_uri(sandbox), demo.WOODGROVE_GLOBAL_ADMIN)
    assert response["admin_consent"] == "True" and response["tenant"] == demo.WOODGROVE
    assert set(response["scope"].split()) == set(demo.CONSENT_SCOPES) and response["state"] == "s1"
    assert "code" not in response
    state = sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)
    assert set(state["admin_consent"]) == set(demo.CONSENT_SCOPES)
    _, result = _signed_in(sandbox, demo.WOODGROVE_AGENT, tenant=demo.WOODGROVE)
    assert _claims(result["access_token"])["tid"] == demo.WOODGROVE
    assert (
        demo.WOODGROVE_AGENT in sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)["user_consents"]
    )


def test_admin_consent_endpoint_with_organizations_and_default(sandbox):
    uri = _admin_consent_uri(sandbox, "organizations", scope=demo.GRAPH_DEFAULT_SCOPE)
    response = sandbox.sign_in(uri, demo.WOODGROVE_GLOBAL_ADMIN)
    assert response["tenant"] == demo.WOODGROVE
    assert GRAPH in response["scope"].split() and PC not in response["scope"].split()


def test_admin_consent_endpoint_refuses_non_admins_and_records_nothing(sandbox):
    with pytest.raises(SandboxError, match="403"):
        sandbox.sign_in(_admin_consent_uri(sandbox), demo.WOODGROVE_AGENT)
    assert sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)["admin_consent"] == []


def test_admin_consent_cancel_is_consent_required_65004(sandbox):
    response = sandbox.sign_in(_admin_consent_uri(sandbox), demo.WOODGROVE_GLOBAL_ADMIN, accept=False)
    assert response["admin_consent"] == "True" and response["error"] == "consent_required"
    assert response["error_description"].startswith("AADSTS65004:") and response["state"] == "s1"


@pytest.mark.parametrize(
    "tenant, params",
    [
        ("common", {}),
        (demo.WOODGROVE, {"redirect_uri": "https://evil.example/cb"}),
        (demo.WOODGROVE, {"client_id": "00000000-0000-0000-0000-000000000001"}),
    ],
)
def test_admin_consent_bad_tenant_client_or_redirect_is_an_error_page(sandbox, tenant, params):
    answer = sandbox.http().get(
        _admin_consent_uri(sandbox, tenant, **params), timeout=5, allow_redirects=False
    )
    assert answer.status_code == 400 and "AADSTS" in answer.text and "Location" not in answer.headers


def test_admin_consent_mixed_scopes_redirects_invalid_scope(sandbox):
    uri = _admin_consent_uri(sandbox, scope=f"{demo.GRAPH_DEFAULT_SCOPE} {PC}")
    error = _redirect_error(sandbox, uri)
    assert error["error"] == "invalid_scope" and error["state"] == "s1"


def test_admin_on_the_normal_page_consents_for_himself_only(sandbox):
    app = sandbox.msal_app(tenant=demo.WOODGROVE)
    _, response = _consent(sandbox, app, demo.WOODGROVE_GLOBAL_ADMIN)
    assert "code" in response
    state = sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)
    assert state["admin_consent"] == [] and list(state["user_consents"]) == [demo.WOODGROVE_GLOBAL_ADMIN]


def test_control_api_withdraws_and_grants_admin_consent(sandbox):
    sandbox.control.remove_consent(demo.CONTOSO, demo.CLIENT_ID)
    _, response = _consent(sandbox, sandbox.msal_app(), demo.SALES_AGENT)
    assert response["error_description"].startswith("AADSTS90094:")
    sandbox.control.grant_consent(demo.WOODGROVE, demo.CLIENT_ID)
    _, result = _signed_in(sandbox, demo.WOODGROVE_AGENT, tenant=demo.WOODGROVE)
    assert "access_token" in result


# --- per-tenant service principal -----------------------------------------------------------------


@pytest.mark.parametrize("state, code", [("disabled", 7000112), ("removed", 700016)])
def test_service_principal_disabled_or_removed_in_one_tenant_only(sandbox, state, code):
    _, contoso = _signed_in(sandbox)
    _, fabrikam = _signed_in(sandbox, demo.FABRIKAM_ADMIN, tenant=demo.FABRIKAM)
    sandbox.control.service_principal(demo.CONTOSO, demo.CLIENT_ID, state)
    refused = sandbox.msal_app().acquire_token_by_refresh_token(contoso["refresh_token"], scopes=[GRAPH])
    assert refused["error"] == "unauthorized_client" and refused["error_codes"] == [code]
    other = sandbox.msal_app(tenant=demo.FABRIKAM).acquire_token_by_refresh_token(
        fabrikam["refresh_token"], scopes=[GRAPH]
    )
    assert "access_token" in other
    # GDAP customers are tenants of their own: the app is still there.
    customer = sandbox.msal_app(tenant=demo.ADATUM).acquire_token_by_refresh_token(
        contoso["refresh_token"], scopes=[GRAPH]
    )
    assert "access_token" in customer


def test_disabled_service_principal_stops_sign_in_and_enabling_restores(sandbox):
    sandbox.control.service_principal(demo.CONTOSO, demo.CLIENT_ID, "disabled")
    with pytest.raises(SandboxError, match="AADSTS7000112"):
        _consent(sandbox, sandbox.msal_app())
    sandbox.control.service_principal(demo.CONTOSO, demo.CLIENT_ID, "enabled")
    assert "code" in _consent(sandbox, sandbox.msal_app())[1]


# --- Graph /me/memberOf ---------------------------------------------------------------------------


def _graph_token(sandbox, upn=demo.ADMIN_AGENT, scopes=(GRAPH,), tenant=demo.CONTOSO):
    app = sandbox.msal_app(tenant=tenant)
    flow, response = _consent(sandbox, app, upn, scopes=list(scopes))
    return app.acquire_token_by_auth_code_flow(flow, response, scopes=[scopes[0]])["access_token"]


def test_member_of_is_paged_with_next_link(sandbox):
    token = _graph_token(sandbox)
    page = _get(sandbox, "/v1.0/me/memberOf?$top=1", token).json()
    items = list(page["value"])
    while "@odata.nextLink" in page:
        link = page["@odata.nextLink"]
        assert link.startswith(sandbox.base_url) and "$skiptoken=" in link
        page = sandbox.http().get(link, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        items += page["value"]
    assert [(i["@odata.type"], i["displayName"]) for i in items] == [
        ("#microsoft.graph.group", "AdminAgents"),
        ("#microsoft.graph.directoryRole", "Global Administrator"),
    ]
    assert _get(sandbox, "/v1.0/me/memberOf?$top=1000", token).status_code == 400
    assert _get(sandbox, "/v1.0/me/memberOf?$skiptoken=garbage", token).status_code == 400


def test_a_self_made_admin_agents_group_is_another_group(sandbox):
    mallory = _get(sandbox, "/v1.0/me/memberOf", _graph_token(sandbox, demo.SELF_MADE_GROUP_USER)).json()[
        "value"
    ]
    adele = _get(sandbox, "/v1.0/me/memberOf", _graph_token(sandbox)).json()["value"]
    assert [g["displayName"] for g in mallory] == ["AdminAgents"]
    assert mallory[0]["id"] != adele[0]["id"]


def test_member_of_with_user_read_only_hides_group_properties(sandbox):
    # Woodgrove has no admin consent: its agent can consent to User.Read alone.
    token = _graph_token(
        sandbox,
        demo.WOODGROVE_AGENT,
        scopes=("https://graph.microsoft.com/User.Read",),
        tenant=demo.WOODGROVE,
    )
    assert _claims(token)["scp"] == "User.Read"
    groups = _get(sandbox, "/v1.0/me/memberOf", token).json()["value"]
    assert len(groups) == 1 and groups[0]["id"] and groups[0]["displayName"] is None


MAIL_ONLY_DIRECTORY = f"""
[[tenants]]
id = "{demo.CONTOSO}"
name = "Contoso Partner"
domain = "contosopartner.onmicrosoft.com"
kind = "partner"

[[tenants.users]]
oid = "c88b68ce-d2bf-4333-b44b-9fb78ab71490"
upn = "{demo.ADMIN_AGENT}"
groups = ["AdminAgents"]
mfa_registered = true

[[apps]]
client_id = "{demo.CLIENT_ID}"
display_name = "Mail reader"
redirect_uris = ["{demo.REDIRECT_URI}"]
[[apps.secrets]]
value = "{demo.CLIENT_SECRET}"
[apps.permissions]
"https://graph.microsoft.com" = ["Mail.Read"]
"""


@pytest.fixture(scope="module")
def mail_only_sandbox(tmp_path_factory):
    """A sandbox whose only app holds a Graph permission that does not cover /me/memberOf."""
    directory = tmp_path_factory.mktemp("mail-only") / "directory.toml"
    directory.write_text(MAIL_ONLY_DIRECTORY)
    with start_sandbox(state_dir=directory.parent / "state", directory=directory) as client:
        yield RunningSandbox(client)


def test_member_of_refuses_a_graph_token_without_a_member_of_scope(mail_only_sandbox):
    token = _graph_token(mail_only_sandbox, scopes=("https://graph.microsoft.com/Mail.Read",))
    assert _claims(token)["scp"] == "Mail.Read"
    answer = _get(mail_only_sandbox, "/v1.0/me/memberOf", token)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "Authorization_RequestDenied"
    assert _get(mail_only_sandbox, "/v1.0/me", token).status_code == 200


def test_member_of_needs_a_graph_token(sandbox):
    token = _graph_token(sandbox, scopes=(ARM,))
    # An ARM token is not a Graph token at all.
    assert _get(sandbox, "/v1.0/me/memberOf", token).status_code == 401
    app_token = sandbox.msal_app(tenant=demo.ADATUM).acquire_token_for_client([demo.GRAPH_DEFAULT_SCOPE])
    answer = _get(sandbox, "/v1.0/me/memberOf", app_token["access_token"])
    assert answer.status_code == 400  # /me needs a delegated token


# --- MFA required, no method registered ------------------------------------------------------------


@pytest.mark.parametrize("ticked", [False, True])
def test_mfa_required_without_a_registered_method_is_50079_enroll(sandbox, ticked):
    """The tenant requires MFA and Nick has no method: whatever he does on the page, the application
    gets interaction_required AADSTS50079 ("you must enroll"), never a code, never 50076."""
    sandbox.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([PC], redirect_uri=demo.REDIRECT_URI)
    answer = sandbox.sign_in(flow["auth_uri"], demo.NO_MFA_USER, mfa=ticked)
    assert "code" not in answer and answer["state"] == flow["state"]
    assert answer["error"] == "interaction_required" and answer["suberror"] == "basic_action"
    assert answer["error_description"].startswith("AADSTS50079:")
    assert "enroll in multi-factor authentication" in answer["error_description"]
    # A user with a method who skips it is told to complete it (a page at the sign-in, no answer yet).
    flow = app.initiate_auth_code_flow([PC], redirect_uri=demo.REDIRECT_URI)
    with pytest.raises(SandboxError, match="answered 400"):
        sandbox.sign_in(flow["auth_uri"], demo.ADMIN_AGENT, mfa=False)


def test_a_refresh_token_of_a_user_without_a_method_gets_50079_once_mfa_is_required(sandbox):
    _, nick = _signed_in(sandbox, demo.NO_MFA_USER, mfa=False)
    _, adele = _signed_in(sandbox, demo.ADMIN_AGENT, mfa=False)
    sandbox.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    app = sandbox.msal_app()
    refused = app.acquire_token_by_refresh_token(nick["refresh_token"], scopes=[GRAPH])
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [50079]
    assert refused["suberror"] == "basic_action"
    # The same policy asks a user who has a method to use it.
    assert app.acquire_token_by_refresh_token(adele["refresh_token"], scopes=[GRAPH])["error_codes"] == [
        50076
    ]


# --- Graph GDAP relationships ---------------------------------------------------------------------

GDAP_LIST = "/v1.0/tenantRelationships/delegatedAdminRelationships"


def _gdap_pages(sandbox, token, path=GDAP_LIST):
    """Every page of a GDAP list, following @odata.nextLink as Graph's paging guidance says."""
    pages = [_get(sandbox, path, token).json()]
    while "@odata.nextLink" in pages[-1]:
        link = pages[-1]["@odata.nextLink"]
        assert link.startswith(f"{sandbox.base_url}{path}?") and "$skiptoken=" in link
        pages.append(sandbox.http().get(link, headers={"Authorization": f"Bearer {token}"}, timeout=5).json())
    return pages


def _relationships(sandbox, token):
    return {item["displayName"]: item for page in _gdap_pages(sandbox, token) for item in page["value"]}


def _iso(value):
    assert value.endswith("Z") and len(value.rpartition(".")[2]) == 8  # seven fractional digits, as Graph
    return datetime.fromisoformat(value[:-2] + "+00:00")


def test_gdap_relationships_are_listed_with_graphs_properties_across_pages(sandbox):
    token = _graph_token(sandbox)
    # Contoso's tenant-wide admin consent covers the app's GDAP permission: it is in every Graph token.
    assert "DelegatedAdminRelationship.Read.All" in _claims(token)["scp"].split()
    pages = _gdap_pages(sandbox, token)
    assert [len(page["value"]) for page in pages] == [5, 5, 3]  # the demo's gdap_page_size
    assert pages[0]["@odata.context"].endswith("$metadata#delegatedAdminRelationships")
    found = _relationships(sandbox, token)
    assert len(found) == demo.GDAP_CONTOSO_COUNT
    assert {item["status"] for item in found.values()} == {
        "created", "approvalPending", "approved", "activating", "active", "expiring", "expired",
        "terminationRequested", "terminating", "terminated",
    }  # fmt: skip
    northwind = found[demo.GDAP_NORTHWIND]
    assert northwind["@odata.type"] == "#microsoft.graph.delegatedAdminRelationship"
    assert northwind["id"].endswith(f"-{demo.CONTOSO}") and len(northwind["id"]) == 73
    assert northwind["customer"] == {"tenantId": demo.NORTHWIND, "displayName": "Northwind Traders"}
    assert northwind["duration"] == "P730D" and northwind["autoExtendDuration"] == "PT0S"
    assert [r["roleDefinitionId"] for r in northwind["accessDetails"]["unifiedRoles"]][0] == (
        "729827e3-9c14-49f7-bb1b-9608f156bbb8"  # Helpdesk Administrator's template id
    )
    # endDateTime = activatedDateTime + duration
    assert _iso(northwind["endDateTime"]) - _iso(northwind["activatedDateTime"]) == timedelta(days=730)
    pending = found["Alpine Ski House onboarding"]
    assert pending["status"] == "approvalPending" and pending["activatedDateTime"] is None
    assert pending["endDateTime"] is None and _iso(pending["createdDateTime"])
    assert found[demo.GDAP_ADATUM]["autoExtendDuration"] == "P180D"
    # Fabrikam's relationship is not Contoso's to see.
    assert "Tailspin managed" not in found


def test_gdap_list_paging_bounds(sandbox):
    token = _graph_token(sandbox)
    one_page = _get(sandbox, f"{GDAP_LIST}?$top=300", token).json()
    assert len(one_page["value"]) == demo.GDAP_CONTOSO_COUNT and "@odata.nextLink" not in one_page
    assert len(_get(sandbox, f"{GDAP_LIST}?$top=1", token).json()["value"]) == 1
    for query in ("$top=301", "$top=0", "$top=x", "$skiptoken=garbage"):
        answer = _get(sandbox, f"{GDAP_LIST}?{query}", token)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "Request_BadRequest", query
    # A skiptoken is bound to the tenant and the path it was written for.
    link = _get(sandbox, f"{GDAP_LIST}?$top=1", token).json()["@odata.nextLink"]
    skiptoken = link.partition("$skiptoken=")[2]
    fabrikam = _graph_token(sandbox, demo.FABRIKAM_ADMIN, tenant=demo.FABRIKAM)
    assert _get(sandbox, f"{GDAP_LIST}?$skiptoken={skiptoken}", fabrikam).status_code == 400


def test_gdap_list_refuses_query_options_the_sandbox_does_not_implement(sandbox):
    answer = _get(sandbox, f"{GDAP_LIST}?$filter=status eq 'active'", _graph_token(sandbox))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_gdap_reads_need_delegated_admin_relationship_read_all(sandbox):
    # Woodgrove granted no admin consent: its agent can hold User.Read only.
    token = _graph_token(
        sandbox,
        demo.WOODGROVE_AGENT,
        scopes=("https://graph.microsoft.com/User.Read",),
        tenant=demo.WOODGROVE,
    )
    for path in (GDAP_LIST, f"{GDAP_LIST}/some-id/accessAssignments"):
        answer = _get(sandbox, path, token)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "Authorization_RequestDenied"
        assert answer.json()["error"]["message"] == "Insufficient privileges to complete the operation."
    # Another resource's token is no Graph token at all; an app-only token holds no application permission.
    assert _get(sandbox, GDAP_LIST, _graph_token(sandbox, scopes=(ARM,))).status_code == 401
    app_token = sandbox.msal_app().acquire_token_for_client([demo.GRAPH_DEFAULT_SCOPE])["access_token"]
    assert _get(sandbox, GDAP_LIST, app_token).status_code == 403


def test_gdap_reads_by_a_user_who_is_no_admin_agent_answer_empty(sandbox):
    token = _graph_token(sandbox, demo.SALES_AGENT)
    assert "DelegatedAdminRelationship.Read.All" in _claims(token)["scp"].split()
    answer = _get(sandbox, GDAP_LIST, token)
    assert answer.status_code == 200 and answer.json()["value"] == []
    adatum = _relationships(sandbox, _graph_token(sandbox))[demo.GDAP_ADATUM]["id"]
    assert _get(sandbox, f"{GDAP_LIST}/{adatum}/accessAssignments", token).json()["value"] == []


def test_gdap_access_assignments(sandbox):
    token = _graph_token(sandbox)
    found = _relationships(sandbox, token)
    adatum = found[demo.GDAP_ADATUM]
    page = _get(sandbox, f"{GDAP_LIST}/{adatum['id']}/accessAssignments", token).json()
    assert page["@odata.context"].endswith("$metadata#accessAssignments")
    [assignment] = page["value"]
    assert assignment["@odata.type"] == "#microsoft.graph.delegatedAdminAccessAssignment"
    assert assignment["status"] == "active"
    assert assignment["accessDetails"] == adatum["accessDetails"]
    # The access container is the partner's AdminAgents group, the same object /me/memberOf lists.
    groups = _get(sandbox, "/v1.0/me/memberOf", token).json()["value"]
    admin_agents = next(g["id"] for g in groups if g["displayName"] == "AdminAgents")
    assert assignment["accessContainer"] == {
        "accessContainerId": admin_agents,
        "accessContainerType": "securityGroup",
    }
    for name, statuses in (("Alpine Ski House onboarding", []), ("Fourth Coffee support", ["deleted"])):
        path = f"{GDAP_LIST}/{found[name]['id']}/accessAssignments"
        assert [a["status"] for a in _get(sandbox, path, token).json()["value"]] == statuses
    missing = _get(sandbox, f"{GDAP_LIST}/not-a-relationship/accessAssignments", token)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    # Another partner's relationship is not found either.
    fabrikam = _graph_token(sandbox, demo.FABRIKAM_ADMIN, tenant=demo.FABRIKAM)
    assert _get(sandbox, f"{GDAP_LIST}/{adatum['id']}/accessAssignments", fabrikam).status_code == 404


def _customer_token(sandbox, refresh_token, customer):
    return sandbox.msal_app(tenant=customer).acquire_token_by_refresh_token(refresh_token, scopes=[GRAPH])


def test_gdap_relationship_ends_on_its_end_date_unless_auto_extended(sandbox):
    _, result = _signed_in(sandbox)
    rt = result["refresh_token"]
    assert "access_token" in _customer_token(sandbox, rt, demo.NORTHWIND)
    before = _relationships(sandbox, _graph_token(sandbox))
    sandbox.control.advance_clock(25 * 86400)  # past Northwind's and Wide World Importers' end dates
    after = _relationships(sandbox, _graph_token(sandbox))
    assert after[demo.GDAP_NORTHWIND]["status"] == "expired"
    assert after[demo.GDAP_NORTHWIND]["endDateTime"] == before[demo.GDAP_NORTHWIND]["endDateTime"]
    extended = after["Wide World Importers managed"]
    assert extended["status"] == "active"
    assert _iso(extended["endDateTime"]) - _iso(before["Wide World Importers managed"]["endDateTime"]) == (
        timedelta(days=180)
    )
    # No active relationship: Entra refuses the customer tenant (the sandbox answers as without any).
    refused = _customer_token(sandbox, rt, demo.NORTHWIND)
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [90099]
    assert "access_token" in _customer_token(sandbox, rt, demo.WIDE_WORLD)


@pytest.mark.parametrize("status", ["expired", "terminated", "terminationRequested", "approvalPending"])
def test_customer_tokens_need_an_active_relationship(sandbox, status):
    _, result = _signed_in(sandbox)
    by_status = {
        "expired": demo.PROSEWARE,
        "terminated": demo.FOURTH_COFFEE,
        "terminationRequested": demo.TREY_RESEARCH,
        "approvalPending": demo.ALPINE_SKI,
    }
    refused = _customer_token(sandbox, result["refresh_token"], by_status[status])
    assert refused["error_codes"] == [90099]


def test_control_api_ends_terminates_and_moves_gdap_relationships(sandbox):
    _, result = _signed_in(sandbox)
    rt = result["refresh_token"]
    control = sandbox.control
    assert control.gdap_expire(demo.GDAP_ADATUM)["status"] == "expired"
    assert _customer_token(sandbox, rt, demo.ADATUM)["error_codes"] == [90099]
    assert (
        control.gdap_terminate(demo.GDAP_LITWARE, "terminationRequested")["status"] == "terminationRequested"
    )
    terminated = control.gdap_terminate(demo.GDAP_LITWARE)
    assert terminated["status"] == "terminated" and terminated["end_date_time"]
    moved = control.gdap_end_date(demo.GDAP_NORTHWIND, 3 * 86400, auto_extend="P180D")
    assert moved["auto_extend"] == "P180D"
    listed = _relationships(sandbox, _graph_token(sandbox))
    assert listed[demo.GDAP_ADATUM]["status"] == "expired"
    assert listed[demo.GDAP_LITWARE]["status"] == "terminated"
    assert listed[demo.GDAP_NORTHWIND]["endDateTime"] == moved["end_date_time"]
    # Bad input changes nothing.
    for call, args in (
        (control.gdap_expire, (demo.GDAP_ADATUM,)),  # already ended
        (control.gdap_terminate, ("Alpine Ski House onboarding",)),  # not active
        (control.gdap_end_date, (demo.GDAP_NORTHWIND, -5)),
        (control.gdap_end_date, (demo.GDAP_NORTHWIND, 5, "P90D")),
        (control.gdap_expire, ("no such relationship",)),
    ):
        with pytest.raises(SandboxError, match="40[04]"):
            call(*args)
    assert _relationships(sandbox, _graph_token(sandbox))[demo.GDAP_NORTHWIND] == listed[demo.GDAP_NORTHWIND]
    # A reset brings the directory's relationships back.
    control.reset()
    assert _relationships(sandbox, _graph_token(sandbox))[demo.GDAP_ADATUM]["status"] == "active"


def test_only_a_created_relationship_can_be_deleted(sandbox):
    control = sandbox.control
    with pytest.raises(SandboxError, match="400"):
        control.gdap_delete(demo.GDAP_ADATUM)
    control.gdap_delete("Lamna Healthcare draft")
    listed = _relationships(sandbox, _graph_token(sandbox))
    assert "Lamna Healthcare draft" not in listed and len(listed) == demo.GDAP_CONTOSO_COUNT - 1


def test_gdap_requests_are_counted(sandbox):
    token = _graph_token(sandbox)
    sandbox.control.clear_counters()
    _gdap_pages(sandbox, token)
    counters = sandbox.control.counters()
    assert counters["requests_by_endpoint"]["gdap"] == 3
    assert counters["token_requests"]["total"] == 0


# --- Partner Center -------------------------------------------------------------------------------


def test_partner_center_refuses_no_mfa_and_other_audiences(sandbox):
    _, no_mfa = _signed_in(sandbox, demo.NO_MFA_USER, mfa=False)
    answer = _get(sandbox, "/v1/profiles/organization", no_mfa["access_token"], **{"MS-CorrelationId": "c-1"})
    assert answer.status_code == 401 and answer.json()["code"] == "900421"
    assert answer.headers["MS-CorrelationId"] == "c-1" and answer.json()["source"] == "PartnerFD"
    # ValidateMfa is not documented by Microsoft: enforcement does not depend on it.
    assert _get(sandbox, "/v1/customers", no_mfa["access_token"], ValidateMfa="false").status_code == 401
    _, good = _signed_in(sandbox)
    graph = sandbox.msal_app().acquire_token_by_refresh_token(good["refresh_token"], scopes=[GRAPH])
    answer = _get(sandbox, "/v1/profiles/organization", graph["access_token"])
    assert answer.status_code == 401 and answer.json()["code"] == "400"


@pytest.mark.parametrize(
    "upn, status",
    [
        (demo.ADMIN_AGENT, 200),
        (demo.SALES_AGENT, 200),
        (demo.HELPDESK_AGENT, 403),
        (demo.SELF_MADE_GROUP_USER, 403),
    ],
)
def test_partner_center_apis_need_an_admin_or_sales_agent_role(sandbox, upn, status):
    _, result = _signed_in(sandbox, upn)
    assert _get(sandbox, "/v1/profiles/organization", result["access_token"]).status_code == status


def test_partner_roles_and_paged_role_members(sandbox):
    _, result = _signed_in(sandbox)
    token = result["access_token"]
    roles = _get(sandbox, "/v1/roles", token).json()
    assert roles["attributes"] == {"objectType": "Collection"}
    assert {r["name"]: r["id"] for r in roles["items"]} == {
        "Admin Agent": demo.PC_ROLE_ADMIN_AGENT,
        "Sales Agent": demo.PC_ROLE_SALES_AGENT,
        "Helpdesk Agent": demo.PC_ROLE_HELPDESK_AGENT,
    }
    page = _get(sandbox, f"/v1/roles/{demo.PC_ROLE_ADMIN_AGENT}/usermembers?size=1", token).json()
    members = list(page["items"])
    while "next" in page["links"]:
        nxt = page["links"]["next"]
        assert nxt["uri"].endswith("seekOperation=Next") and page["continuationToken"]
        headers = {h["key"]: h["value"] for h in nxt["headers"]}
        page = _get(sandbox, nxt["uri"], token, **headers).json()
        members += page["items"]
    assert "continuationToken" not in page
    assert [m["userPrincipalName"] for m in members] == [demo.ADMIN_AGENT, demo.NO_MFA_USER]
    assert all(
        m["roleId"] == demo.PC_ROLE_ADMIN_AGENT and m["attributes"]["objectType"] == "UserMember"
        for m in members
    )
    sales = _get(sandbox, f"/v1/roles/{demo.PC_ROLE_SALES_AGENT}/usermembers", token).json()["items"]
    assert [m["userPrincipalName"] for m in sales] == [demo.SALES_AGENT]


def test_self_made_group_user_is_in_no_partner_role(sandbox):
    _, result = _signed_in(sandbox)
    upns = {
        m["userPrincipalName"]
        for role in (demo.PC_ROLE_ADMIN_AGENT, demo.PC_ROLE_SALES_AGENT, demo.PC_ROLE_HELPDESK_AGENT)
        for m in _get(sandbox, f"/v1/roles/{role}/usermembers", result["access_token"]).json()["items"]
    }
    assert demo.SELF_MADE_GROUP_USER not in upns and demo.ADMIN_AGENT in upns


@pytest.mark.parametrize("upn", [demo.SALES_AGENT, demo.SELF_MADE_GROUP_USER])
def test_only_admin_agents_read_partner_roles(sandbox, upn):
    _, result = _signed_in(sandbox, upn)
    assert _get(sandbox, "/v1/roles", result["access_token"]).status_code == 403
    answer = _get(sandbox, f"/v1/roles/{demo.PC_ROLE_ADMIN_AGENT}/usermembers", result["access_token"])
    assert answer.status_code == 403 and answer.json()["code"] == "403"


def test_partner_roles_bad_input(sandbox):
    _, result = _signed_in(sandbox)
    token = result["access_token"]
    base = f"/v1/roles/{demo.PC_ROLE_ADMIN_AGENT}/usermembers"
    assert _get(sandbox, f"{base}?size=0", token).status_code == 400
    assert _get(sandbox, f"{base}?size=501", token).status_code == 400
    assert _get(sandbox, f"{base}?size=x", token).status_code == 400
    assert _get(sandbox, f"{base}?seekOperation=Next", token).status_code == 400  # no token header
    garbled = _get(sandbox, f"{base}?seekOperation=Next", token, **{"MS-ContinuationToken": "garbage"})
    assert garbled.status_code == 400 and garbled.json()["code"] == "400"
    first = _get(sandbox, f"{base}?size=1", token).json()
    other_role = f"/v1/roles/{demo.PC_ROLE_SALES_AGENT}/usermembers?seekOperation=Next"
    misused = _get(sandbox, other_role, token, **{"MS-ContinuationToken": first["continuationToken"]})
    assert misused.status_code == 400
    assert (
        _get(sandbox, "/v1/roles/00000000-0000-0000-0000-000000000000/usermembers", token).status_code == 404
    )
    _, no_mfa = _signed_in(sandbox, demo.NO_MFA_USER, mfa=False)
    assert _get(sandbox, "/v1/roles", no_mfa["access_token"]).json()["code"] == "900421"


# --- PKCE and client assertions -------------------------------------------------------------------


def test_authorize_requests_record_pkce(sandbox):
    _consent(sandbox, sandbox.msal_app())
    query = urlencode(
        {"client_id": demo.CLIENT_ID, "response_type": "code", "redirect_uri": demo.REDIRECT_URI, "scope": PC}
    )
    sandbox.http().get(f"{sandbox.base_url}/{demo.CONTOSO}/oauth2/v2.0/authorize?{query}", timeout=5)
    sandbox.http().get(_admin_consent_uri(sandbox), timeout=5)
    records = sandbox.control.authorize_requests()
    assert [(r["endpoint"], r["pkce"], r["code_challenge_method"]) for r in records] == [
        ("authorize", True, "S256"),
        ("authorize", False, None),
        ("adminconsent", False, None),
    ]
    assert (
        records[0]["scope"].split()[:3] == demo.CONSENT_SCOPES and records[0]["client_id"] == demo.CLIENT_ID
    )
    sandbox.control.clear_authorize_requests()
    assert sandbox.control.authorize_requests() == []


def test_code_issued_with_a_challenge_needs_a_verifier(sandbox):
    _, response = _consent(sandbox, sandbox.msal_app(), scopes=[PC])
    answer = sandbox.token_request(
        grant_type="authorization_code",
        client_id=demo.CLIENT_ID,
        client_secret=demo.CLIENT_SECRET,
        code=response["code"],
        redirect_uri=demo.REDIRECT_URI,
        scope=PC,
    ).json()
    assert answer["error"] == "invalid_grant" and answer["error_codes"] == [501481]


@pytest.mark.parametrize(
    "public_certificate, alg, header", [(True, "PS256", "x5t#S256"), (False, "RS256", "x5t")]
)
def test_certificate_assertions_ps256_and_legacy_rs256(sandbox, public_certificate, alg, header):
    credential = {"private_key": demo.KEY_PATH.read_text()}
    if public_certificate:
        credential["public_certificate"] = demo.CERT_PATH.read_text()
    else:
        credential["thumbprint"] = demo.CERT_SHA1_THUMBPRINT
    result = sandbox.msal_app(tenant=demo.ADATUM, credential=credential).acquire_token_for_client(
        [demo.GRAPH_DEFAULT_SCOPE]
    )
    assert _claims(result["access_token"])["appidacr"] == "2"
    assert [(a["alg"], a["thumbprint_header"]) for a in sandbox.control.client_assertions()] == [
        (alg, header)
    ]


@pytest.mark.parametrize("upn, granted", [(demo.WOODGROVE_GLOBAL_ADMIN, True), (demo.WOODGROVE_AGENT, False)])
def test_v1_prompt_admin_consent_needs_a_directory_admin(sandbox, upn, granted):
    query = urlencode(
        {
            "client_id": demo.CLIENT_ID,
            "response_type": "code",
            "redirect_uri": demo.REDIRECT_URI,
            "resource": PC_URI,
            "prompt": "admin_consent",
        }
    )
    response = sandbox.sign_in(f"{sandbox.base_url}/{demo.WOODGROVE}/oauth2/authorize?{query}", upn)
    admin_consent = sandbox.control.consent_state(demo.WOODGROVE, demo.CLIENT_ID)["admin_consent"]
    if granted:
        assert response["admin_consent"] == "True" and "code" in response and PC in admin_consent
    else:
        assert response["error_description"].startswith("AADSTS90094:") and admin_consent == []
