"""Consent onboarding through the real MSAL library, over real TLS, against the sandbox."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.db import connection
from django.test import Client

from partners.models import Partner
from partners.views.onboarding import FLOW_SESSION_KEY
from sandbox import demo
from tests.fixtures.panel import consent_run
from tokens.models import AuditEvent, ConsentGrant

pytestmark = pytest.mark.django_db


def _nothing_stored() -> None:
    assert Partner.objects.count() == 0
    assert ConsentGrant.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_the_onboarding_page_explains_what_is_asked(application, client: Client) -> None:
    page = client.get("/onboarding/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "multi-factor authentication" in body
    assert demo.PARTNER_CENTER_SCOPE in body and demo.GRAPH_SCOPE in body


def test_connect_starts_an_auth_code_flow_with_state_nonce_and_pkce(application, client: Client) -> None:
    connect = client.post("/onboarding/connect/")
    assert connect.status_code == 302
    query = parse_qs(urlparse(connect.headers["Location"]).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    assert query["prompt"] == ["login"]
    assert "offline_access" in query["scope"][0].split()


def test_consent_with_mfa_creates_partner_and_grant_with_encrypted_refresh_token(
    application, panel_settings, client: Client
) -> None:
    run = consent_run(client, panel_settings)
    assert run.page.status_code == 200
    grant = ConsentGrant.objects.select_related("partner").get()
    assert str(grant.partner.tenant_id) == demo.CONTOSO
    assert grant.partner.display_name == "Contoso Partner"
    assert grant.consented_by_upn == demo.ADMIN_AGENT
    assert grant.consented_by_role == ConsentGrant.Role.ADMIN_AGENT
    assert grant.mfa_at_consent is True
    assert sorted(grant.audiences) == ["arm", "graph", "partner_center"]
    assert grant.state == ConsentGrant.State.ACTIVE
    assert grant.refresh_token  # decrypts
    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token FROM tokens_consentgrant")
        (stored,) = cursor.fetchone()
    assert grant.refresh_token not in stored
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions == [AuditEvent.Action.CONSENTED]
    # Code redemption (for Partner Center), then one refresh per other audience to prove it.
    counters = panel_settings.control.counters()["token_requests"]["by_grant_type"]
    assert counters == {"authorization_code": 1, "refresh_token": 2}


def test_a_sales_agent_consents_as_sales_agent(application, panel_settings, client: Client) -> None:
    run = consent_run(client, panel_settings, upn=demo.SALES_AGENT)
    assert run.page.status_code == 200
    assert ConsentGrant.objects.get().consented_by_role == ConsentGrant.Role.SALES_AGENT


def test_consenting_again_renews_the_same_grant_with_a_new_generation(
    application, panel_settings, client: Client
) -> None:
    consent_run(client, panel_settings)
    first = ConsentGrant.objects.get()
    again = consent_run(client, panel_settings)
    assert "Already connected by" in again.confirmation.content.decode()
    assert again.page.status_code == 200
    renewed = ConsentGrant.objects.get()
    assert renewed.pk == first.pk
    assert renewed.generation == first.generation + 1
    assert renewed.refresh_token != first.refresh_token
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RENEWED).count() == 1


def test_sign_in_without_mfa_is_refused_and_stores_nothing(
    application, panel_settings, client: Client
) -> None:
    run = consent_run(client, panel_settings, mfa=False)
    assert run.page.status_code == 403
    assert "Multi-factor authentication is required" in run.page.content.decode()
    _nothing_stored()


def test_cancelling_consent_explains_and_stores_nothing(application, panel_settings, client: Client) -> None:
    run = consent_run(client, panel_settings, accept=False)
    assert run.page.status_code == 403
    assert "Consent was cancelled" in run.page.content.decode()
    _nothing_stored()


def test_a_callback_without_a_started_flow_is_refused(application, client: Client) -> None:
    response = client.get("/onboarding/callback/?code=abc&state=xyz", follow=True)
    assert response.redirect_chain == [("/onboarding/failed/", 302)]
    assert response.status_code == 400
    assert "expired or was already used" in response.content.decode()
    _nothing_stored()


def test_a_tampered_state_is_refused(application, panel_settings, client: Client) -> None:
    connect = client.post("/onboarding/connect/")
    answer = panel_settings.sign_in(connect.headers["Location"], demo.ADMIN_AGENT)
    answer["state"] = "forged-" + answer["state"]
    response = client.get(f"/onboarding/callback/?{urlencode(answer)}", follow=True)
    assert response.status_code == 400
    _nothing_stored()


def test_a_replayed_callback_is_refused(application, panel_settings, client: Client) -> None:
    connect = client.post("/onboarding/connect/")
    answer = panel_settings.sign_in(connect.headers["Location"], demo.ADMIN_AGENT)
    assert client.get(f"/onboarding/callback/?{urlencode(answer)}").status_code == 302
    replay = client.get(f"/onboarding/callback/?{urlencode(answer)}", follow=True)
    assert replay.status_code == 400
    assert ConsentGrant.objects.count() == 1


def test_a_wrong_nonce_is_refused(application, panel_settings, client: Client) -> None:
    connect = client.post("/onboarding/connect/")
    session = client.session
    flow = session[FLOW_SESSION_KEY]
    flow["nonce"] = "not-the-nonce-sent-to-the-provider"
    session[FLOW_SESSION_KEY] = flow
    session.save()
    answer = panel_settings.sign_in(connect.headers["Location"], demo.ADMIN_AGENT)
    response = client.get(f"/onboarding/callback/?{urlencode(answer)}", follow=True)
    assert response.status_code == 400
    assert "nonce" in response.content.decode()
    _nothing_stored()


def test_repeated_parameters_are_refused(application, client: Client) -> None:
    response = client.get("/onboarding/callback/?state=a&state=b&code=c", follow=True)
    assert response.status_code == 400
    _nothing_stored()


def test_a_provider_error_without_a_flow_is_refused(application, client: Client) -> None:
    response = client.get("/onboarding/callback/?error=access_denied&state=zzz", follow=True)
    assert response.status_code == 400
    _nothing_stored()


def test_identity_provider_down_during_code_redemption_gives_503(
    application, panel_settings, client: Client
) -> None:
    connect = client.post("/onboarding/connect/")
    answer = panel_settings.sign_in(connect.headers["Location"], demo.ADMIN_AGENT)
    panel_settings.control.add_fault("http_503", count=5)
    response = client.get(f"/onboarding/callback/?{urlencode(answer)}", follow=True)
    assert response.status_code == 503
    assert "unavailable" in response.content.decode()
    _nothing_stored()


def test_identity_provider_unreachable_at_connect_gives_503(application, client: Client, settings) -> None:
    from tokens.issuance.identity import msal_apps_clear

    msal_apps_clear()
    settings.IDENTITY_HTTP_TIMEOUT = 2
    application.authority_host = "https://127.0.0.1:9"  # nothing listens on the discard port
    application.save()
    response = client.post("/onboarding/connect/")
    assert response.status_code == 503
    _nothing_stored()


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        ("consent_required", 403, "Consent is required"),
        ("interaction_required", 403, "Consent is required"),
        ("server_error", 400, "did not complete"),
    ],
)
def test_provider_errors_for_a_started_flow_explain_and_store_nothing(
    application, client: Client, error: str, status: int, title: str
) -> None:
    connect = client.post("/onboarding/connect/")
    state = parse_qs(urlparse(connect.headers["Location"]).query)["state"][0]
    response = client.get(f"/onboarding/callback/?{urlencode({'error': error, 'state': state})}", follow=True)
    assert response.status_code == status
    assert title in response.content.decode()
    _nothing_stored()
