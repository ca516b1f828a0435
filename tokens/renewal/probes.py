"""Probes: while a credential alert pauses an application, one grant is redeemed per
RENEWAL_PROBE_MINUTES to find out whether the credential works again. A success closes the alert
(tokens.renewal.alerts.operator_alerts_close_on_success, on the one refresh path), and the sweep that
runs right after the probe enqueues every due grant of the application again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from tokens.models import Application, OperatorAlert
from tokens.renewal.sweep import GrantRenewal, grant_renew, grants_due_list


@dataclass(frozen=True)
class Probe:
    application_id: str
    renewal: GrantRenewal | None  # None: the application has no grant to probe with


def _probe_claim(application_id: uuid.UUID, *, now: datetime) -> bool:
    """At most one probe per application and interval, across sweeps, beats and hosts: a
    conditional UPDATE, which exactly one of any concurrent claimers wins."""
    interval = timedelta(minutes=settings.RENEWAL_PROBE_MINUTES)
    return bool(
        Application.objects.filter(pk=application_id)
        .filter(Q(probed_at__isnull=True) | Q(probed_at__lte=now - interval))
        .update(probed_at=now)
    )


def alert_probes_run(*, now: datetime | None = None) -> list[Probe]:
    """One probe redemption for each paused application whose interval has passed."""
    now = now or timezone.now()
    paused = (
        OperatorAlert.objects.filter(pauses=True, resolved_at=None)
        .values_list("application_id", flat=True)
        .distinct()
    )
    probes = []
    for application_id in paused:
        if not _probe_claim(application_id, now=now):
            continue
        grant_id = (
            grants_due_list(now=now, include_not_due=True, include_paused=True)
            .filter(application_id=application_id)
            .values_list("pk", flat=True)
            .first()
        )
        renewal = None if grant_id is None else grant_renew(grant_id=str(grant_id), force=True)
        probes.append(Probe(str(application_id), renewal))
    return probes
