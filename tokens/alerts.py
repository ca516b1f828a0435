"""Operator alerts: application-level failures that no partner can fix."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F

from tokens.failures import Failure
from tokens.models import Application, OperatorAlert


def operator_alert_raise(*, application: Application, failure: Failure) -> OperatorAlert:
    """Open one alert per (application, code), and e-mail the operators once when it opens.
    Repeats only count occurrences, so a sweep over 10,000 grants sends one e-mail, not 10,000."""
    open_alert = OperatorAlert.objects.filter(application=application, code=failure.code, resolved_at=None)
    with transaction.atomic():
        if open_alert.update(occurrences=F("occurrences") + 1):
            return open_alert.get()
        try:
            with transaction.atomic():
                alert = OperatorAlert.objects.create(
                    application=application, code=failure.code, message=failure.message[:500]
                )
        except IntegrityError:
            # Another worker opened it between our UPDATE and INSERT; the unique index made us wait
            # for its commit, so the row is visible now: count this occurrence on it.
            open_alert.update(occurrences=F("occurrences") + 1)
            return open_alert.get()
        transaction.on_commit(lambda: _operator_alert_mail(alert))
    return alert


def _operator_alert_mail(alert: OperatorAlert) -> None:
    if not settings.OPERATOR_ALERT_EMAILS:
        return
    send_mail(
        subject=f"[SAM control panel] {alert.application.name}: {alert.code}",
        message=(
            f"{alert.message}\n\nNo partner grant was changed: this failure belongs to the application. "
            f"Fix the credential, then resolve the alert in the admin."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=list(settings.OPERATOR_ALERT_EMAILS),
    )
