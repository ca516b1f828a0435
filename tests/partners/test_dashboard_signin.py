"""Dashboard sign-in through the sandbox (real MSAL, real TLS), and every way it can fail."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.test import Client
from django.test.utils import override_settings

from controlpanel.middleware import SEEN_KEY, STARTED_KEY
from partners.access import SESSION_KEY
from partners.models import AgentRole, PartnerUser
from partners.views.dashboard import SIGNIN_FLOW_SESSION_KEY
from sandbox import demo
from tests.fixtures.sandbox import RunningSandbox

pytestmark = pytest.mark.django_db


def signed_answer(
    client: Client, sandbox: RunningSandbox, upn: str = demo.ADMIN_AGENT, **kwargs
) -> dict[str, str]:
    """Start a dashboard sign-in and play the user at the sandbox: the answer the browser brings back."""
    start = client.post("/dashboard/signin/start/")
    assert start.status_code == 302, start.content
    return sandbox.sign_in(start.headers["Location"], upn, **kwargs)


def dashboard_sign_in(
    client: Client, sandbox: RunningSandbox, upn: str = demo.ADMIN_AGENT, *, mfa: bool = True
):
    """The callback's answer; a refusal is followed to its page (the callback redirects to it)."""
    answer = signed_answer(client, sandbox, upn, mfa=mfa)
    callback = client.get(f"/dashboard/signin/callback/?{urlencode(answer)}")
    if callback.status_code == 302 and callback.headers["Location"] == "/dashboard/signin/failed/":
        return client.get("/dashboard/signin/failed/")
    return callback


@pytest.fixture
def known_partner(consented_grant):
    """Contoso has consented (so it is a known partner); a fresh browser signs in to the dashboard."""
    return consented_grant


def test_the_sign_in_request_asks_for_openid_profile_and_partner_center_only(
    application, client: Client
) -> None:
    start = client.post("/dashboard/signin/start/")
    query = parse_qs(urlparse(start.headers["Location"]).query)
    assert set(query["scope"][0].split()) == {
        "openid",
        "profile",
        "offline_access",
        demo.PARTNER_CENTER_SCOPE,
    }
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/dashboard/signin/callback/"]
    assert query["prompt"] == ["login"] and query["code_challenge_method"] == ["S256"]


def test_an_admin_agent_signs_in_with_mfa(known_partner, panel_settings) -> None:
    client = Client()
    callback = dashboard_sign_in(client, panel_settings)
    assert callback.status_code == 302 and callback.headers["Location"] == "/dashboard/"
    member = PartnerUser.objects.get()
    assert (member.upn, member.role, member.partner) == (
        demo.ADMIN_AGENT,
        AgentRole.ADMIN_AGENT,
        known_partner.partner,
    )
    assert client.session[SESSION_KEY] == member.pk
    assert SIGNIN_FLOW_SESSION_KEY not in client.session
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "Renew SAM Control Panel (demo)" in page.content.decode()


def test_a_sales_agent_signs_in_as_a_viewer(known_partner, panel_settings) -> None:
    client = Client()
    dashboard_sign_in(client, panel_settings, demo.SALES_AGENT)
    assert PartnerUser.objects.get().role == AgentRole.SALES_AGENT
    body = client.get("/dashboard/").content.decode()
    assert "Only admin agents can renew or revoke" in body and "Renew SAM" not in body


def test_sign_in_cycles_the_session_key(known_partner, panel_settings) -> None:
    client = Client()
    client.post("/dashboard/signin/start/")
    before = client.session.session_key
    answer = signed_answer(client, panel_settings)
    client.get(f"/dashboard/signin/callback/?{urlencode(answer)}")
    assert client.session.session_key != before


def _nothing_stored(client: Client) -> None:
    assert PartnerUser.objects.count() == 0
    assert SESSION_KEY not in client.session
    assert client.get("/dashboard/").status_code == 302


def test_sign_in_without_mfa_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    callback = dashboard_sign_in(client, panel_settings, demo.NO_MFA_USER, mfa=False)
    assert callback.status_code == 403
    assert "Multi-factor authentication is required" in callback.content.decode()
    _nothing_stored(client)


def test_sign_in_from_an_unknown_tenant_offers_onboarding(known_partner, panel_settings) -> None:
    client = Client()
    callback = dashboard_sign_in(client, panel_settings, demo.FABRIKAM_ADMIN)
    assert callback.status_code == 403
    body = callback.content.decode()
    assert "not connected yet" in body and 'href="/onboarding/"' in body
    _nothing_stored(client)


def test_a_tampered_state_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    answer = signed_answer(client, panel_settings)
    callback = client.get(
        f"/dashboard/signin/callback/?{urlencode({**answer, 'state': 'forged'})}", follow=True
    )
    assert callback.status_code == 400 and "expired or was already used" in callback.content.decode()
    _nothing_stored(client)


def test_a_tampered_code_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    answer = signed_answer(client, panel_settings)
    callback = client.get(
        f"/dashboard/signin/callback/?{urlencode({**answer, 'code': answer['code'] + 'x'})}", follow=True
    )
    assert callback.status_code == 400
    assert "could not be completed" in callback.content.decode()
    _nothing_stored(client)


def test_a_repeated_parameter_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    answer = signed_answer(client, panel_settings)
    query = urlencode(answer) + "&code=other"
    callback = client.get(f"/dashboard/signin/callback/?{query}", follow=True)
    assert callback.status_code == 400 and "malformed" in callback.content.decode()
    _nothing_stored(client)


def test_a_replayed_answer_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    answer = signed_answer(client, panel_settings)
    assert client.get(f"/dashboard/signin/callback/?{urlencode(answer)}").status_code == 302
    client.post("/dashboard/signout/")
    replay = client.get(f"/dashboard/signin/callback/?{urlencode(answer)}", follow=True)
    assert replay.status_code == 400
    assert client.get("/dashboard/").status_code == 302


def test_a_cancelled_sign_in_is_refused(known_partner, panel_settings) -> None:
    client = Client()
    answer = signed_answer(client, panel_settings, accept=False)
    callback = client.get(f"/dashboard/signin/callback/?{urlencode(answer)}", follow=True)
    assert callback.status_code == 403 and "cancelled" in callback.content.decode()
    _nothing_stored(client)


def test_a_callback_without_a_started_sign_in_is_refused(application, client: Client) -> None:
    callback = client.get("/dashboard/signin/callback/?code=abc&state=xyz", follow=True)
    assert callback.status_code == 400
    _nothing_stored(client)


def test_sign_in_start_needs_post(application, client: Client) -> None:
    assert client.get("/dashboard/signin/start/").status_code == 405


def test_sign_out_needs_post_with_csrf(known_partner, panel_settings) -> None:
    client = Client(enforce_csrf_checks=True)
    client.cookies.load({})
    csrf_client = Client()
    dashboard_sign_in(csrf_client, panel_settings)
    client.cookies = csrf_client.cookies
    assert client.post("/dashboard/signout/").status_code == 403  # no CSRF token
    assert client.get("/dashboard/").status_code == 200
    csrf_client.post("/dashboard/signout/")
    assert csrf_client.get("/dashboard/").status_code == 302


@pytest.mark.parametrize("stale", [STARTED_KEY, SEEN_KEY])
def test_sessions_expire_when_idle_and_absolutely(known_partner, panel_settings, stale: str) -> None:
    client = Client()
    dashboard_sign_in(client, panel_settings)
    assert client.get("/dashboard/").status_code == 200
    with override_settings(SESSION_IDLE_SECONDS=60, SESSION_ABSOLUTE_SECONDS=3600):
        session = client.session
        session[stale] = time.time() - 4000
        session.save()
        assert client.get("/dashboard/").status_code == 302
        assert SESSION_KEY not in client.session
