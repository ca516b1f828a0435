"""MFA and agent-role evidence at consent and at dashboard sign-in, as real Entra ID and Partner Center
provide it (the sandbox follows them: docs/sandbox.md): v2.0 ID tokens carry no `amr`, the v1.0 Partner
Center access token does, Partner Center refuses a token without `mfa` (401, 900421) and names its
agents through its own roles API. Real MSAL over real TLS."""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
import pytest
from django.test import Client

from partners.models import Partner, PartnerUser
from sandbox import demo
from tests.fixtures.panel import consent_run
from tests.partners.test_dashboard_signin import dashboard_sign_in
from tokens.models import AuditEvent, ConsentGrant

pytestmark = pytest.mark.django_db


def _nothing_stored() -> None:
    assert Partner.objects.count() == 0
    assert ConsentGrant.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_the_id_token_of_an_mfa_sign_in_has_no_amr_yet_the_admin_agent_consents(
    application, panel_settings, client: Client
) -> None:
    app = panel_settings.msal_app()
    flow = app.initiate_auth_code_flow([demo.PARTNER_CENTER_SCOPE], redirect_uri=demo.REDIRECT_URI)
    result = app.acquire_token_by_auth_code_flow(
        flow,
        panel_settings.sign_in(flow["auth_uri"], demo.ADMIN_AGENT, mfa=True),
        scopes=[demo.PARTNER_CENTER_SCOPE],
    )
    id_claims = jwt.decode(result["id_token"], options={"verify_signature": False})
    assert "amr" not in id_claims and "acr" not in id_claims
    access_claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert access_claims["ver"] == "1.0" and "mfa" in access_claims["amr"]

    run = consent_run(client, panel_settings)
    assert run.page.status_code == 200
    grant = ConsentGrant.objects.get()
    assert grant.mfa_at_consent is True and grant.consented_by_upn == demo.ADMIN_AGENT


def test_consent_without_mfa_is_refused_and_stores_nothing(
    application, panel_settings, client: Client
) -> None:
    run = consent_run(client, panel_settings, upn=demo.NO_MFA_USER, mfa=False)
    assert run.page.status_code == 403
    assert "Multi-factor authentication is required" in run.page.content.decode()
    _nothing_stored()


def test_consent_that_partner_center_refuses_for_mfa_is_refused_and_stores_nothing(
    application, panel_settings, client: Client
) -> None:
    panel_settings.control.add_fault("mfa_required", endpoint="partner_center", count=1)
    run = consent_run(client, panel_settings)
    assert run.page.status_code == 403
    assert "Multi-factor authentication is required" in run.page.content.decode()
    _nothing_stored()


@pytest.mark.parametrize("upn", [demo.SELF_MADE_GROUP_USER, demo.HELPDESK_AGENT])
def test_only_partner_centers_admin_and_sales_agents_may_consent_not_a_self_made_admin_agents_group(
    application, panel_settings, client: Client, upn: str
) -> None:
    run = consent_run(client, panel_settings, upn=upn)
    assert run.page.status_code == 403
    assert "not a partner agent" in run.page.content.decode()
    _nothing_stored()


def test_a_self_made_admin_agents_group_makes_nobody_an_agent_at_sign_in(
    consented_grant, panel_settings
) -> None:
    client = Client()
    callback = dashboard_sign_in(client, panel_settings, demo.SELF_MADE_GROUP_USER)
    assert callback.status_code == 403
    assert "not a partner agent" in callback.content.decode()
    assert PartnerUser.objects.count() == 0


def test_sign_in_that_partner_center_refuses_for_mfa_is_refused(consented_grant, panel_settings) -> None:
    client = Client()
    panel_settings.control.add_fault("mfa_required", endpoint="partner_center", count=1)
    callback = dashboard_sign_in(client, panel_settings)
    assert callback.status_code == 403
    assert "Multi-factor authentication is required" in callback.content.decode()
    assert PartnerUser.objects.count() == 0


def test_the_panel_always_uses_pkce_s256_and_never_mixes_default_with_named_scopes(
    consented_grant, panel_settings
) -> None:
    dashboard_sign_in(Client(), panel_settings)
    consent_run(Client(), panel_settings, decision="cancel")
    requests = [r for r in panel_settings.control.authorize_requests() if r["endpoint"] == "authorize"]
    assert len(requests) == 3
    for request in requests:
        assert request["pkce"] is True and request["code_challenge_method"] == "S256"
        scopes = request["scope"].split()
        defaults = [scope for scope in scopes if scope.endswith("/.default")]
        assert not defaults or len(scopes) == len(defaults) == 1
        assert request["prompt"] == "login"


def test_an_agent_whose_tenant_lacks_admin_consent_is_sent_to_an_administrator(
    application, panel_settings, client: Client
) -> None:
    refused = consent_run(client, panel_settings, upn=demo.WOODGROVE_AGENT)
    assert refused.page.status_code == 403
    body = refused.page.content.decode()
    assert "administrator of your organization must approve" in body
    assert 'action="/onboarding/admin-consent/"' in body
    _nothing_stored()

    start = client.post("/onboarding/admin-consent/")
    assert start.status_code == 302
    answer = panel_settings.sign_in(start.headers["Location"], demo.WOODGROVE_GLOBAL_ADMIN)
    done = client.get(f"/onboarding/admin-consent/callback/?{urlencode(answer)}", follow=True)
    assert done.redirect_chain == [("/onboarding/admin-consent/done/", 302)]
    assert done.status_code == 200 and "Administrator consent given" in done.content.decode()
    _nothing_stored()

    connected = consent_run(client, panel_settings, upn=demo.WOODGROVE_AGENT)
    assert connected.page.status_code == 200
    assert str(ConsentGrant.objects.select_related("partner").get().partner.tenant_id) == demo.WOODGROVE
