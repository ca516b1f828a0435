"""Who may consent, the "already connected: continuing replaces it" confirmation, the success page
after a redirect, and the administrator's tenant-wide consent. Real MSAL over TLS to the sandbox."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.core.cache import cache
from django.test import Client

from partners.views.onboarding import ADMIN_CONSENT_SESSION_KEY, PENDING_SESSION_KEY
from sandbox import demo
from tests.fixtures.panel import consent_run
from tokens.audit import Actor
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent, ConsentGrant

pytestmark = pytest.mark.django_db

STAFF = Actor(type=AuditEvent.ActorType.STAFF, id="operator")


def _unchanged(grant: ConsentGrant) -> None:
    now = ConsentGrant.objects.get(pk=grant.pk)
    assert (now.generation, now.state, now.consented_by_upn, now.refresh_token) == (
        grant.generation,
        grant.state,
        grant.consented_by_upn,
        grant.refresh_token,
    )


def test_success_ends_on_a_page_reached_by_redirect_so_a_reload_changes_nothing(
    application, panel_settings, client: Client
) -> None:
    run = consent_run(client, panel_settings)
    assert run.callback.status_code == 302 and run.callback.headers["Location"] == "/onboarding/done/"
    assert "Contoso Partner is connected" in run.page.content.decode()
    reload = client.get("/onboarding/done/")
    assert reload.status_code == 200 and "is connected" in reload.content.decode()
    assert ConsentGrant.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_the_done_page_without_a_consent_goes_back_to_onboarding(application, client: Client) -> None:
    response = client.get("/onboarding/done/")
    assert response.status_code == 302 and response.headers["Location"] == "/onboarding/"


def test_a_sales_agent_may_make_the_first_connection(application, panel_settings, client: Client) -> None:
    run = consent_run(client, panel_settings, upn=demo.SALES_AGENT)
    assert run.page.status_code == 200 and run.confirmation is None
    assert ConsentGrant.objects.get().consented_by_role == ConsentGrant.Role.SALES_AGENT


def test_a_sales_agent_cannot_replace_an_admin_agents_grant(consented_grant, panel_settings) -> None:
    run = consent_run(Client(), panel_settings, upn=demo.SALES_AGENT)
    assert run.page.status_code == 403
    body = run.page.content.decode()
    assert "Only an admin agent can replace this connection" in body
    assert f"already connected by {demo.ADMIN_AGENT}" in body
    assert run.confirmation is None
    _unchanged(consented_grant)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RENEWED).exists()


def test_a_sales_agent_cannot_reactivate_a_revoked_grant(consented_grant, panel_settings) -> None:
    revoked = grant_revoke(grant=consented_grant, actor=STAFF, reason="test")
    run = consent_run(Client(), panel_settings, upn=demo.SALES_AGENT)
    assert run.page.status_code == 403
    assert "(revoked since)" in run.page.content.decode()
    _unchanged(revoked)
    assert ConsentGrant.objects.get().refresh_token is None


def test_an_admin_agent_reactivates_a_revoked_grant_after_confirming(consented_grant, panel_settings) -> None:
    revoked = grant_revoke(grant=consented_grant, actor=STAFF, reason="test")
    run = consent_run(Client(), panel_settings)
    assert run.confirmation is not None
    assert "(revoked since)" in run.confirmation.content.decode()
    assert run.page.status_code == 200
    grant = ConsentGrant.objects.get()
    assert grant.state == ConsentGrant.State.ACTIVE and grant.refresh_token
    assert grant.generation == revoked.generation + 1


def test_cancelling_the_replacement_changes_nothing_and_forgets_the_consent(
    consented_grant, panel_settings
) -> None:
    client = Client()
    run = consent_run(client, panel_settings, decision="cancel")
    assert run.confirmation is not None
    assert run.page.status_code == 200 and "Connect your partner account" in run.page.content.decode()
    _unchanged(consented_grant)
    late = client.post("/onboarding/confirm/", {"decision": "replace"}, follow=True)
    assert late.status_code == 400 and "expired" in late.content.decode()
    _unchanged(consented_grant)


def test_a_confirmation_is_used_once(consented_grant, panel_settings) -> None:
    client = Client()
    run = consent_run(client, panel_settings)
    assert run.page.status_code == 200
    renewed = ConsentGrant.objects.get()
    again = client.post("/onboarding/confirm/", {"decision": "replace"}, follow=True)
    assert again.status_code == 400
    _unchanged(renewed)


def test_the_waiting_consent_is_sealed_in_the_cache_not_kept_in_the_session(
    consented_grant, panel_settings
) -> None:
    client = Client()
    connect = client.post("/onboarding/connect/")
    answer = panel_settings.sign_in(connect.headers["Location"], demo.ADMIN_AGENT)
    callback = client.get(f"/onboarding/callback/?{urlencode(answer)}")
    assert callback.status_code == 302 and callback.headers["Location"] == "/onboarding/confirm/"
    confirmation = client.get("/onboarding/confirm/")
    assert b'name="decision"' in confirmation.content
    # A reload shows the same question; the answer's code is no longer in the address.
    reload = client.get("/onboarding/confirm/")
    assert reload.status_code == 200 and b"continuing replaces it" in reload.content
    pending_id = client.session[PENDING_SESSION_KEY]
    sealed = cache.get(f"consent-pending:{pending_id}")
    assert isinstance(sealed, bytes)
    assert demo.ADMIN_AGENT.encode() not in sealed and b"refresh_token" not in sealed
    assert "refresh" not in str(dict(client.session.items()))


def test_a_confirmation_without_a_waiting_consent_is_refused(application, client: Client) -> None:
    response = client.post("/onboarding/confirm/", {"decision": "replace"}, follow=True)
    assert response.status_code == 400
    assert client.get("/onboarding/confirm/").status_code == 400
    assert ConsentGrant.objects.count() == 0


def test_confirm_answers_get_and_post_only(application, client: Client) -> None:
    assert client.put("/onboarding/confirm/").status_code == 405


def test_admin_consent_sends_the_administrator_to_the_v2_endpoint(application, client: Client) -> None:
    response = client.post("/onboarding/admin-consent/")
    assert response.status_code == 302
    location = urlparse(response.headers["Location"])
    assert location.path == "/organizations/v2.0/adminconsent"
    query = parse_qs(location.query)
    assert query["client_id"] == [demo.CLIENT_ID]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/onboarding/admin-consent/callback/"]
    assert set(query["scope"][0].split()) == {
        scope for scopes in application.audiences.values() for scope in scopes
    }
    assert query["state"] == [client.session[ADMIN_CONSENT_SESSION_KEY]]


@pytest.mark.parametrize(
    ("answer", "status", "text"),
    [
        (
            {"admin_consent": "True", "tenant": demo.CONTOSO, "state": "forged"},
            400,
            "expired or was already used",
        ),
        ({"error": "access_denied", "error_description": "AADSTS65004", "state": None}, 403, "was not given"),
        ({"error": "server_error", "state": None}, 403, "did not complete"),
        ({"tenant": demo.CONTOSO, "state": None}, 400, "malformed"),
        ({"admin_consent": "True", "state": None, "extra": ["a", "b"]}, 400, "malformed"),
    ],
)
def test_admin_consent_answers_that_are_not_a_consent_are_explained(
    application, client: Client, answer, status: int, text: str
) -> None:
    client.post("/onboarding/admin-consent/")
    state = client.session[ADMIN_CONSENT_SESSION_KEY]
    query = urlencode({k: (state if v is None else v) for k, v in answer.items()}, doseq=True)
    response = client.get(f"/onboarding/admin-consent/callback/?{query}", follow=True)
    assert response.redirect_chain == [("/onboarding/failed/", 302)]
    assert response.status_code == status
    assert text in response.content.decode()
    assert ConsentGrant.objects.count() == 0


def test_an_admin_consent_answer_without_a_started_request_is_refused(application, client: Client) -> None:
    response = client.get(
        f"/onboarding/admin-consent/callback/?admin_consent=True&tenant={demo.CONTOSO}&state=x", follow=True
    )
    assert response.status_code == 400
    # Without a consent just given, its "done" page is not shown.
    assert client.get("/onboarding/admin-consent/done/").headers["Location"] == "/onboarding/"


def test_of_two_racing_confirms_only_the_one_that_removes_the_waiting_consent_uses_it(
    consented_grant, panel_settings, monkeypatch
) -> None:
    from partners import onboarding
    from partners.authflow import SignInRefused
    from tokens.models import ConsentGrant as Grant

    record = onboarding.ConsentRecord(
        tenant_id=demo.CONTOSO, tenant_name="Contoso Partner", tenant_domain=demo.CONTOSO_DOMAIN,
        consented_by_oid=demo.CONTOSO, consented_by_upn=demo.ADMIN_AGENT,
        consented_by_role=Grant.Role.ADMIN_AGENT, mfa=True, audiences=["partner_center"],
        refresh_token="racing-refresh-token",
    )  # fmt: skip
    pending_id = onboarding.consent_pending_put(consent=record)
    real_get = cache.get

    def get_then_lose_the_race(key, *args, **kwargs):
        value = real_get(key, *args, **kwargs)
        cache.delete(key)  # the other confirm takes it between our read and our delete
        return value

    monkeypatch.setattr(cache, "get", get_then_lose_the_race)
    with pytest.raises(SignInRefused, match="expired"):
        onboarding.consent_pending_take(pending_id=pending_id)
    _unchanged(consented_grant)
