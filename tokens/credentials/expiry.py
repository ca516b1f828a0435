"""Application credentials seen from the outside: Entra refused one, or one nears its expiry.
Both are for staff (alerts that pause nothing); the application keeps working meanwhile."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tokens.issuance.failures import Failure, FailureClass
from tokens.models import Application, ApplicationCredential
from tokens.renewal.alerts import operator_alert_raise


def credential_refused_record(
    *, application: Application, credential_id: uuid.UUID, failure: Failure
) -> None:
    """Entra refused this credential while another one of the application worked: flag it (later
    redemptions try it last) and open one alert that pauses nothing."""
    credential = ApplicationCredential.objects.filter(pk=credential_id).first()
    if credential is None:
        return
    ApplicationCredential.objects.filter(pk=credential_id, refused_at=None).update(
        refused_at=timezone.now(), refused_code=failure.code[:64]
    )
    operator_alert_raise(
        application=application,
        failure=Failure(FailureClass.OPERATOR, f"REFUSED_{credential.pk.hex}", failure.message),
        pauses=False,
        message=(
            f"Entra refused the {credential.get_kind_display().lower()} added {credential.created_at:%Y-%m-%d} "
            f"({failure.code}); an older credential served the request. Check the app registration, "
            "then add the credential again or disable it."
        ),
    )


@dataclass
class CredentialExpiryReport:
    alerted: list[str] = field(default_factory=list)


def credential_expiry_check(*, now: datetime | None = None) -> CredentialExpiryReport:
    """One alert per credential and threshold of CREDENTIAL_EXPIRY_WARNING_DAYS (30 and 7 by
    default) before it expires; once each, even after staff close the alert."""
    now = now or timezone.now()
    report = CredentialExpiryReport()
    thresholds = sorted(settings.CREDENTIAL_EXPIRY_WARNING_DAYS)
    if not thresholds:
        return report
    near = ApplicationCredential.objects.filter(
        disabled_at=None, expires_at__gt=now, expires_at__lte=now + timedelta(days=thresholds[-1])
    ).select_related("application")
    for credential in near:
        remaining = credential.expires_at - now
        days = min(d for d in thresholds if remaining <= timedelta(days=d))
        if credential.expiry_warned_days is not None and credential.expiry_warned_days <= days:
            continue
        with transaction.atomic():
            updated = (
                ApplicationCredential.objects.filter(pk=credential.pk)
                .exclude(expiry_warned_days__lte=days)
                .update(expiry_warned_days=days)
            )
            if not updated:
                continue  # another sweep alerted it meanwhile
            operator_alert_raise(
                application=credential.application,
                failure=Failure(
                    FailureClass.OPERATOR,
                    f"EXPIRES_{days}D_{credential.pk.hex}",
                    f"The {credential.get_kind_display().lower()} added {credential.created_at:%Y-%m-%d} "
                    f"expires on {credential.expires_at:%Y-%m-%d %H:%M} UTC (within {days} days). Add a new "
                    "credential in the app registration and run manage.py sync_application.",
                ),
                pauses=False,
            )
        report.alerted.append(f"{credential.pk}:{days}")
    return report
