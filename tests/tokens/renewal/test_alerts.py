"""Operator alerts: one open alert per (application, code), every occurrence counted."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.fixtures.concurrency import run_concurrently
from tokens.issuance.failures import Failure, FailureClass
from tokens.models import Application, OperatorAlert
from tokens.renewal.alerts import operator_alert_raise

EXPIRED_SECRET = Failure(FailureClass.OPERATOR, "AADSTS7000222", "The client secret has expired.")


def _application() -> Application:
    return Application.objects.create(
        name="app", client_id="app", authority_host="https://x", redirect_uri="https://x/cb"
    )


@pytest.mark.django_db
def test_repeats_count_on_one_alert_and_mail_once(settings, django_capture_on_commit_callbacks) -> None:
    settings.OPERATOR_ALERT_EMAILS = ["ops@example.invalid"]
    application = _application()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            operator_alert_raise(application=application, failure=EXPIRED_SECRET)
    alert = OperatorAlert.objects.get()
    assert alert.occurrences == 3
    assert len(mail.outbox) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_occurrences_are_all_counted(postgres_only) -> None:
    application = _application()
    callers = 12
    _, errors = run_concurrently(
        callers, lambda: operator_alert_raise(application=application, failure=EXPIRED_SECRET)
    )
    assert errors == []
    alert = OperatorAlert.objects.get()
    assert alert.occurrences == callers
