"""Beat liveness: each periodic sweep records when it ran, and anyone can ask whether beat is
alive (the health page, and /healthz/renewal for monitoring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from tokens.models import SweepHeartbeat

RENEWAL_SWEEP = "renewal_sweep"


def sweep_heartbeat_record(*, name: str = RENEWAL_SWEEP, now: datetime | None = None) -> None:
    SweepHeartbeat.objects.update_or_create(name=name, defaults={"last_run_at": now or timezone.now()})


@dataclass(frozen=True)
class Liveness:
    last_sweep_at: datetime | None
    stale_after: timedelta
    stale: bool


def renewal_liveness_get(*, now: datetime | None = None) -> Liveness:
    """Stale when no renewal sweep ran for two sweep intervals (or never ran)."""
    now = now or timezone.now()
    last = SweepHeartbeat.objects.filter(name=RENEWAL_SWEEP).values_list("last_run_at", flat=True).first()
    stale_after = timedelta(minutes=2 * settings.RENEWAL_SWEEP_MINUTES)
    return Liveness(last, stale_after, last is None or now - last > stale_after)
