"""What the dashboard and the staff console show of the GDAP inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from gdap.models import Inventory, Relationship
from gdap.warnings import relationships_ending
from partners.models import Partner
from tokens.staff_admin.health import Status


@dataclass(frozen=True)
class PartnerSummary:
    inventory: Inventory | None
    listed: int
    active: int
    ending: list[tuple[Relationship, int]]  # (relationship, whole days left), soonest first
    within_days: int
    urgent_days: int


def gdap_partner_summary(*, partner: Partner, now: datetime | None = None) -> PartnerSummary:
    """The partner's inventory at a glance: its last read, how many relationships are active, and
    the active ones ending within the largest of GDAP_WARNING_DAYS without extending themselves."""
    now = now or timezone.now()
    within = max(settings.GDAP_WARNING_DAYS, default=0)
    counts = Relationship.objects.filter(partner=partner, gone_at=None).aggregate(
        listed=Count("pk"), active=Count("pk", filter=Q(status=Relationship.Status.ACTIVE))
    )
    ending = relationships_ending(now=now, within_days=within).filter(partner=partner).order_by("ends_at")
    return PartnerSummary(
        inventory=Inventory.objects.filter(partner=partner).first(),
        listed=counts["listed"],
        active=counts["active"],
        ending=[(r, r.ends_in_days(now) or 0) for r in ending],
        within_days=within,
        urgent_days=min(settings.GDAP_WARNING_DAYS, default=0),
    )


@dataclass(frozen=True)
class GdapCounts:
    """For the staff console: active relationships, not auto-extended, ending within each of
    GDAP_WARNING_DAYS (days -> count), and the inventories whose last read failed or never ran."""

    ending_within: dict[int, int] = field(default_factory=dict)
    inventories_failing: int = 0
    inventories_never_read: int = 0

    @property
    def status(self) -> Status:
        """Warning while a relationship is about to end or a read failed: each needs someone to act
        (the partner extends it in Partner Center; staff look at the failed read). Never failing: the
        panel still works, and Entra remains the judge of each customer token."""
        if any(self.ending_within.values()) or self.inventories_failing:
            return Status.WARNING
        return Status.OK


def gdap_counts_get(*, now: datetime | None = None) -> GdapCounts:
    now = now or timezone.now()
    ending = {
        days: relationships_ending(now=now, within_days=days).count()
        for days in sorted(settings.GDAP_WARNING_DAYS)
    }
    inventories = Inventory.objects.aggregate(
        failing=Count("pk", filter=~Q(error_code="")), never=Count("pk", filter=Q(read_at__isnull=True))
    )
    return GdapCounts(
        ending_within=ending,
        inventories_failing=inventories["failing"],
        inventories_never_read=inventories["never"],
    )
