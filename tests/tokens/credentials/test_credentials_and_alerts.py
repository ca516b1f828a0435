"""Alerts that close, probes, pausing only for the application's own credential, credential
rotation (current = newest added, fallback to the next valid one), credential expiry alerts.
In-process against the sandbox (real MSAL over TLS); the worker versions are in
test_renewal_worker.py."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from sandbox import demo
from tests.fixtures.renewal import sandbox_refreshes
from tokens.audit import Actor
from tokens.credentials.applications import credential_certificate_add, credential_secret_add
from tokens.credentials.expiry import credential_expiry_check
from tokens.issuance.identity import credential_current_id, msal_apps_clear
from tokens.models import ApplicationCredential, AuditEvent, ConsentGrant, OperatorAlert
from tokens.renewal.alerts import AlertAlreadyClosed, operator_alert_close
from tokens.renewal.probes import alert_probes_run
from tokens.renewal.sweep import Outcome, grant_renew, grants_due_list, renewal_sweep

pytestmark = pytest.mark.django_db
State = ConsentGrant.State


@pytest.fixture
def certificate_pem(tmp_path: Path) -> Path:
    """The demo app's registered certificate with its private key, as sync_application reads it."""
    path = tmp_path / "app.pem"
    path.write_text(demo.CERT_PATH.read_text() + demo.KEY_PATH.read_text())
    return path


def test_a_broken_secret_pauses_probes_once_per_interval_and_a_new_credential_closes_the_alert(
    stale_grant, panel_settings, certificate_pem, settings, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    settings.OPERATOR_ALERT_EMAILS = ["ops@example.invalid"]
    sandbox = panel_settings.control
    sandbox.expire_secret(demo.CLIENT_ID)
    before = ConsentGrant.objects.values().get()
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_renew(grant_id=str(stale_grant.pk)).outcome is Outcome.OPERATOR
    alert = OperatorAlert.objects.get()
    assert alert.pauses and alert.code == "AADSTS7000222"
    assert "probe" in mail.outbox[0].body and "close_alert" in mail.outbox[0].body
    after = ConsentGrant.objects.values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    assert list(grants_due_list(now=timezone.now())) == []
    # Probes: the first sweep sends one, the next ones within RENEWAL_PROBE_MINUTES none.
    sandbox.clear_counters()
    (probe,) = alert_probes_run()
    assert probe.renewal is not None and probe.renewal.outcome is Outcome.OPERATOR
    assert alert_probes_run() == [] and alert_probes_run() == []
    assert sandbox_refreshes(panel_settings) == 1
    assert OperatorAlert.objects.get().resolved_at is None
    # The operator adds the app's certificate (sync_application); the next interval's probe works,
    # the alert closes with an audit event, and the same sweep enqueues the grant again.
    settings.SAM_APP_CLIENT_ID = demo.CLIENT_ID
    settings.SAM_APP_CLIENT_SECRET = ""
    settings.SAM_APP_CERTIFICATE_FILE = str(certificate_pem)
    settings.SAM_APP_REDIRECT_URI = demo.REDIRECT_URI
    settings.IDENTITY_AUTHORITY_HOST = panel_settings.base_url
    settings.SAM_AUDIENCES = stale_grant.application.audiences
    call_command("sync_application", stdout=StringIO())
    msal_apps_clear()
    later = timezone.now() + timedelta(minutes=settings.RENEWAL_PROBE_MINUTES, seconds=1)
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(days=8)
    )
    (probe,) = alert_probes_run(now=later)
    assert probe.renewal is not None and probe.renewal.outcome is Outcome.RENEWED
    alert = OperatorAlert.objects.get()
    assert alert.resolved_at is not None and alert.resolved_by == "system:alerts"
    closed = AuditEvent.objects.get(action=AuditEvent.Action.ALERT_CLOSED)
    assert closed.error_code == "AADSTS7000222" and "succeeded" in closed.detail
    assert [a["thumbprint_header"] for a in sandbox.client_assertions()]  # the certificate was used
    ConsentGrant.objects.filter(pk=stale_grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(days=8)
    )
    published: list[tuple[str, ...]] = []
    from tokens.tasks import grant_renew_task

    monkeypatch.setattr(
        grant_renew_task, "apply_async", lambda args, countdown, **options: published.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_sweep().grant_ids == [str(stale_grant.pk)]


def test_an_alert_that_pauses_nothing_leaves_the_grants_due(stale_grant) -> None:
    OperatorAlert.objects.create(application=stale_grant.application, code="AADSTS999", message="x")
    assert list(grants_due_list(now=timezone.now())) == [stale_grant]
    assert alert_probes_run() == []


def test_the_certificate_added_after_the_secret_is_current_whatever_its_not_before(
    application, panel_settings, certificate_pem
) -> None:
    secret = application.credentials.get()
    certificate = credential_certificate_add(application=application, pem=certificate_pem.read_bytes())
    assert certificate.not_before < secret.not_before  # a certificate valid from long ago ...
    assert credential_current_id(application=application) == certificate.pk  # ... still wins


def test_a_refused_newest_credential_falls_back_to_the_older_one_in_the_same_call(
    consented_grant, panel_settings, service_actor, django_capture_on_commit_callbacks
) -> None:
    from tokens.issuance.broker import access_token_get

    application = consented_grant.application
    older = application.credentials.get()
    newest = credential_secret_add(application=application, secret="not-registered-at-entra-5c1f")
    msal_apps_clear()
    panel_settings.control.clear_counters()
    with django_capture_on_commit_callbacks(execute=True):
        token = access_token_get(
            partner=consented_grant.partner, audience="graph", purpose="rotation test", actor=service_actor
        )
    assert token.token
    assert sandbox_refreshes(panel_settings) == 2  # the newest refused, the older accepted: one call
    newest.refresh_from_db()
    assert newest.refused_at is not None and newest.refused_code == "AADSTS7000215"
    (alert,) = OperatorAlert.objects.all()
    assert not alert.pauses and alert.code == f"REFUSED_{newest.pk.hex}"
    assert credential_current_id(application=application) == older.pk  # tried last from now on
    # Staff add it again (fixed at Entra): it is tried in its turn again.
    credential_secret_add(application=application, secret="not-registered-at-entra-5c1f")
    assert credential_current_id(application=application) == newest.pk
    assert ConsentGrant.objects.get().state == State.ACTIVE


def test_credential_expiry_alerts_at_30_and_7_days_once_each(application, settings) -> None:
    credential = application.credentials.get()
    expires = timezone.now() + timedelta(days=60)
    ApplicationCredential.objects.filter(pk=credential.pk).update(expires_at=expires)
    assert credential_expiry_check(now=expires - timedelta(days=31)).alerted == []
    assert len(credential_expiry_check(now=expires - timedelta(days=29)).alerted) == 1
    assert credential_expiry_check(now=expires - timedelta(days=28)).alerted == []
    OperatorAlert.objects.update(resolved_at=timezone.now())  # staff closed it: no repeat
    assert credential_expiry_check(now=expires - timedelta(days=20)).alerted == []
    assert len(credential_expiry_check(now=expires - timedelta(days=6)).alerted) == 1
    assert credential_expiry_check(now=expires - timedelta(days=1)).alerted == []
    codes = sorted(OperatorAlert.objects.values_list("code", flat=True))
    assert codes == [f"EXPIRES_30D_{credential.pk.hex}", f"EXPIRES_7D_{credential.pk.hex}"]
    assert not OperatorAlert.objects.filter(pauses=True).exists()


def test_staff_close_alerts_with_a_reason_and_it_is_audited(application) -> None:
    alert = OperatorAlert.objects.create(
        application=application, code="AADSTS7000222", message="x", pauses=True
    )
    actor = Actor.staff(7, "10.0.0.1")
    with pytest.raises(ValueError, match="reason"):
        operator_alert_close(alert_id=alert.pk, actor=actor, reason="  ")
    assert OperatorAlert.objects.get().resolved_at is None
    operator_alert_close(alert_id=alert.pk, actor=actor, reason="secret rotated by hand")
    with pytest.raises(AlertAlreadyClosed):
        operator_alert_close(alert_id=alert.pk, actor=actor, reason="again")
    event = AuditEvent.objects.get(action=AuditEvent.Action.ALERT_CLOSED)
    assert (event.actor_type, event.actor_id, event.detail) == ("staff", "7", "secret rotated by hand")


def test_the_close_alert_command(application) -> None:
    first = OperatorAlert.objects.create(application=application, code="A1", message="x", pauses=True)
    OperatorAlert.objects.create(application=application, code="A2", message="y")
    out = StringIO()
    call_command("close_alert", "--list", stdout=out)
    assert "A1" in out.getvalue() and "pauses renewal" in out.getvalue()
    with pytest.raises(CommandError, match="reason"):
        call_command("close_alert", str(first.pk))
    with pytest.raises(CommandError, match="No alert"):
        call_command("close_alert", "999999", "--reason", "x")
    call_command("close_alert", str(first.pk), "--reason", "fixed", stdout=StringIO())
    with pytest.raises(CommandError, match="closed at"):
        call_command("close_alert", str(first.pk), "--reason", "fixed")
    call_command(
        "close_alert", "--client-id", application.client_id, "--reason", "all fixed", stdout=StringIO()
    )
    assert not OperatorAlert.objects.filter(resolved_at=None).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ALERT_CLOSED).count() == 2
    with pytest.raises(CommandError, match="No open alert"):
        call_command("close_alert", "--client-id", application.client_id, "--reason", "x")


def test_a_certificate_signs_a_new_assertion_for_every_redemption(
    stale_grant, panel_settings, certificate_pem
) -> None:
    """One MSAL object serves every redemption of the process: with MSAL's own reused assertion
    (same jti for nine minutes) the sandbox, keeping assertions single-use, refused the second."""
    application = stale_grant.application
    credential_certificate_add(application=application, pem=certificate_pem.read_bytes())
    ApplicationCredential.objects.filter(kind=ApplicationCredential.Kind.SECRET).update(
        disabled_at=timezone.now()
    )
    msal_apps_clear()
    for _ in range(3):
        assert grant_renew(grant_id=str(stale_grant.pk), force=True).outcome is Outcome.RENEWED
    assertions = panel_settings.control.client_assertions()
    assert [(a["alg"], a["thumbprint_header"]) for a in assertions] == [("PS256", "x5t#S256")] * 3
