"""Operator alerts: what staff must look at. Opened by the vault and the credential checks,
closed by a successful redemption (credential alerts), by staff with a reason, or by
`manage.py close_alert`; every close is audited."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from tokens.audit import Actor, audit_record
from tokens.issuance.failures import Failure, FailureClass
from tokens.models import Application, AuditEvent, OperatorAlert

SUCCESS_ACTOR = Actor.system("alerts")


def operator_alert_raise(
    *, application: Application, failure: Failure, pauses: bool | None = None, message: str = ""
) -> OperatorAlert:
    """Open one alert per (application, code), and e-mail the operators once when it opens.
    Repeats only count occurrences, so a sweep over 10,000 grants sends one e-mail, not 10,000.
    By default only a failure of the application's own credential (operator class) pauses."""
    pauses = failure.failure_class is FailureClass.OPERATOR if pauses is None else pauses
    open_alert = OperatorAlert.objects.filter(application=application, code=failure.code, resolved_at=None)
    with transaction.atomic():
        if open_alert.update(occurrences=F("occurrences") + 1):
            return open_alert.get()
        try:
            with transaction.atomic():
                alert = OperatorAlert.objects.create(
                    application=application,
                    code=failure.code,
                    message=(message or failure.message)[:500],
                    pauses=pauses,
                )
        except IntegrityError:
            # Another worker opened it between our UPDATE and INSERT; the unique index made us wait
            # for its commit, so the row is visible now: count this occurrence on it.
            open_alert.update(occurrences=F("occurrences") + 1)
            return open_alert.get()
        audit_record(
            actor=SUCCESS_ACTOR,
            action=AuditEvent.Action.OPERATOR_ALERT,
            application=application,
            error_code=failure.code,
            detail=f"{'pauses renewal' if pauses else 'pauses nothing'}: {alert.message}",
        )
        transaction.on_commit(lambda: _operator_alert_mail(alert))
    return alert


def operator_alerts_close_on_success(*, application: Application) -> int:
    """A redemption with the application's credential just succeeded: its credential alerts
    (the pausing ones) are over. One SELECT when none is open, the usual case."""
    open_ids = list(
        OperatorAlert.objects.filter(application=application, pauses=True, resolved_at=None).values_list(
            "pk", flat=True
        )
    )
    for alert_id in open_ids:
        operator_alert_close(
            alert_id=alert_id,
            actor=SUCCESS_ACTOR,
            reason="a redemption with the application's credential succeeded",
        )
    return len(open_ids)


class AlertAlreadyClosed(Exception):
    pass


def operator_alert_close(*, alert_id: int, actor: Actor, reason: str) -> OperatorAlert:
    """Close one open alert, with the reason, audited. Raises ValueError without a reason,
    OperatorAlert.DoesNotExist, or AlertAlreadyClosed."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required to close an alert")
    with transaction.atomic():
        alert = OperatorAlert.objects.select_for_update().select_related("application").get(pk=alert_id)
        if alert.resolved_at is not None:
            raise AlertAlreadyClosed(f"alert {alert_id} was closed at {alert.resolved_at:%Y-%m-%d %H:%M:%S}")
        alert.resolved_at = timezone.now()
        alert.resolved_by = f"{actor.type}:{actor.id}"[:128]
        alert.resolution = reason[:500]
        alert.save(update_fields=["resolved_at", "resolved_by", "resolution", "last_seen_at"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.ALERT_CLOSED,
            application=alert.application,
            error_code=alert.code,
            detail=reason,
        )
    return alert


def _operator_alert_mail(alert: OperatorAlert) -> None:
    if not settings.OPERATOR_ALERT_EMAILS:
        return
    effect = (
        "Renewal of this application's grants is paused; one probe redemption runs every "
        f"{settings.RENEWAL_PROBE_MINUTES:g} minutes and the first success closes this alert."
        if alert.pauses
        else "Nothing is paused."
    )
    send_mail(
        subject=f"[SAM control panel] {alert.application.name}: {alert.code}",
        message=(
            f"{alert.message}\n\n{effect}\n\nClose it in the admin (Operator alerts, action "
            f"'Close with a reason') or with: manage.py close_alert {alert.pk} --reason '...'"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=list(settings.OPERATOR_ALERT_EMAILS),
    )
