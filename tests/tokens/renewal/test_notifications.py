"""One notification path: whatever moves a grant into needs_renewal, expired or revoked e-mails the
consenting user and the partner's notification contacts once, after the commit; the e-mail's
link opens a page that works signed out (the sign-in brings the partner back) and signed in.
Per-tenant codes affect one grant; an unknown code needs attention and pauses nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode, urlparse

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, member_make
from tokens.audit import Actor
from tokens.issuance.vault import grant_revoke
from tokens.models import AuditEvent, ConsentGrant, Notification, OperatorAlert
from tokens.renewal.contacts import notification_contact_add
from tokens.renewal.sweep import Outcome, grant_renew, grants_due_list

pytestmark = pytest.mark.django_db
State = ConsentGrant.State
CONTACT = "noc@contoso.example"


def _body(**overrides: object) -> dict[str, object]:
    return {"partner_tenant_id": demo.CONTOSO, "audience": "graph", "purpose": "list customers"} | overrides


@pytest.fixture
def contoso(consented_grant) -> ConsentGrant:
    notification_contact_add(partner=consented_grant.partner, email=CONTACT, actor=Actor.system("test"))
    mail.outbox.clear()
    return consented_grant


def _renew_link(message) -> str:
    (link,) = re.findall(r"https?://\S+/dashboard/grants/\S+/renew/", message.body)
    return urlparse(link).path


def test_an_api_call_that_finds_the_grant_broken_emails_the_contacts_once_and_the_link_works(
    contoso, panel_settings, api_call, client, django_capture_on_commit_callbacks
) -> None:
    panel_settings.control.revoke_sessions(demo.ADMIN_AGENT)  # AADSTS50173 from now on
    client.cookies.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert api_call(_body()).status_code == 409
        assert api_call(_body()).status_code == 409  # refused without asking Entra: no second e-mail
    (message,) = mail.outbox
    assert sorted(message.to) == sorted([demo.ADMIN_AGENT, CONTACT])
    assert "AADSTS50173" not in message.subject and "revoked" in message.body.lower()
    assert ConsentGrant.objects.get().state == State.NEEDS_RENEWAL
    assert Notification.objects.get().condition == "needs_renewal"

    # The link, as a browser follows it: signed out -> the sign-in page -> sign in -> back on it.
    browser = Client()
    path = _renew_link(message)
    first = browser.get(path)
    assert first.status_code == 302 and first.headers["Location"] == "/dashboard/signin/"
    assert browser.get("/dashboard/signin/").status_code == 200
    start = browser.post("/dashboard/signin/start/")
    answer = panel_settings.sign_in(start.headers["Location"], demo.ADMIN_AGENT)
    back = browser.get(f"/dashboard/signin/callback/?{urlencode(answer)}")
    assert back.status_code == 302 and back.headers["Location"] == path
    page = browser.get(path)
    body = page.content.decode()
    assert page.status_code == 200
    assert f"Renew {contoso.application.name} for {contoso.partner.display_name}" in body
    assert 'type="submit">Renew' in body
    # Signed in already: the link opens the page at once, and its button starts the consent.
    again = browser.get(path)
    assert again.status_code == 200
    renew = browser.post(path)
    assert renew.status_code == 302 and demo.CONTOSO in renew.headers["Location"]


def test_the_sign_in_return_target_is_used_once(contoso, panel_settings) -> None:
    browser = Client()
    path = f"/dashboard/grants/{contoso.pk}/renew/"
    browser.get(path)
    start = browser.post("/dashboard/signin/start/")
    answer = panel_settings.sign_in(start.headers["Location"], demo.ADMIN_AGENT)
    assert browser.get(f"/dashboard/signin/callback/?{urlencode(answer)}").headers["Location"] == path
    browser.post("/dashboard/signout/")
    start = browser.post("/dashboard/signin/start/")
    answer = panel_settings.sign_in(start.headers["Location"], demo.ADMIN_AGENT)
    assert (
        browser.get(f"/dashboard/signin/callback/?{urlencode(answer)}").headers["Location"] == "/dashboard/"
    )


def test_the_app_disabled_in_one_partners_tenant_needs_that_partner_only(
    contoso, panel_settings, django_capture_on_commit_callbacks
) -> None:
    panel_settings.control.service_principal(demo.CONTOSO, demo.CLIENT_ID, "disabled")
    ConsentGrant.objects.update(last_refreshed_at=timezone.now() - timedelta(days=8))
    with django_capture_on_commit_callbacks(execute=True):
        result = grant_renew(grant_id=str(contoso.pk))
    assert (result.outcome, result.failure_code) == (Outcome.NEEDS_RENEWAL, "AADSTS7000112")
    assert not OperatorAlert.objects.exists()  # nothing paused: not the application's credential
    (message,) = mail.outbox
    assert "Global Administrator of your tenant must enable" in message.body
    page = Client()
    alice = member_make(
        partner=contoso.partner, upn="alice@contoso", role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
    )
    body = dashboard_login(page, alice).get(f"/dashboard/grants/{contoso.pk}/renew/").content.decode()
    assert "must enable it again" in body


def test_an_unknown_code_needs_attention_pauses_nothing_and_a_success_clears_it(
    contoso, panel_settings, django_capture_on_commit_callbacks, settings
) -> None:
    settings.OPERATOR_ALERT_EMAILS = ["ops@example.invalid"]
    # Entra answers Contoso's redemptions with a code nobody has placed (the sandbox's aadsts fault).
    panel_settings.control.add_fault(
        "aadsts",
        endpoint="token",
        code=4242424,
        error="server_misconfigured",
        tenant=demo.CONTOSO,
        seconds=60,
    )
    ConsentGrant.objects.update(last_refreshed_at=timezone.now() - timedelta(days=8))
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_renew(grant_id=str(contoso.pk)).outcome is Outcome.NEEDS_ATTENTION
    grant = ConsentGrant.objects.get()
    assert grant.state == State.NEEDS_ATTENTION and grant.is_issuable and grant.next_attempt_at is not None
    alert = OperatorAlert.objects.get()
    assert alert.code == "AADSTS4242424" and not alert.pauses
    assert [m.to for m in mail.outbox] == [["ops@example.invalid"]]  # staff told; the partner not
    assert not Notification.objects.exists()
    # Nothing paused: once its backoff is over the grant is due again, like every other.
    ConsentGrant.objects.update(next_attempt_at=None)
    assert list(grants_due_list(now=timezone.now())) == [grant]
    panel_settings.control.clear_faults()
    assert grant_renew(grant_id=str(contoso.pk)).outcome is Outcome.RENEWED
    assert ConsentGrant.objects.get().state == State.ACTIVE
    assert AuditEvent.objects.filter(detail__startswith="needs_attention -> active").count() == 1


def test_revoke_and_expiry_email_once_per_generation(contoso, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=contoso, actor=Actor.system("test"), reason="test")
        grant_revoke(grant=contoso, actor=Actor.system("test"), reason="test again")
    (message,) = mail.outbox
    assert "was revoked" in message.subject and sorted(message.to) == sorted([demo.ADMIN_AGENT, CONTACT])
    assert Notification.objects.get().condition == "revoked"


def test_a_failed_transaction_records_and_sends_nothing(contoso) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        grant_revoke(grant=contoso, actor=Actor.system("test"), reason="test")
        raise RuntimeError("rolled back")
    assert not Notification.objects.exists() and mail.outbox == []
