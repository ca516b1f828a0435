"""What the panel knows of each partner's GDAP relationships with its customers, read from
Microsoft Graph (gdap.inventory). docs/gdap.md describes the whole feature."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q

from partners.models import Partner


class Inventory(models.Model):
    """The last read of one partner's relationships: when it succeeded, and what the last attempt
    met if it failed (a failed read changes no relationship)."""

    partner = models.OneToOneField(
        Partner, primary_key=True, on_delete=models.CASCADE, related_name="gdap_inventory"
    )
    read_at = models.DateTimeField(null=True, blank=True, help_text="The last complete read.")
    attempted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Of the last attempt; empty when it succeeded. Codes: docs/gdap.md, "When a read fails".
    error_code = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # Set when a refresh is enqueued: later sweeps (and refused customer requests) leave the partner
    # alone until then, so a slow queue does not fill with duplicates.
    enqueued_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "GDAP inventory"
        verbose_name_plural = "GDAP inventories"

    def __str__(self) -> str:
        return f"GDAP inventory of {self.partner_id}"


class Relationship(models.Model):
    """One GDAP relationship (Graph's delegatedAdminRelationship) of a partner, as last read."""

    class Status(models.TextChoices):
        # Microsoft Graph's delegatedAdminRelationshipStatus values, spelled as Graph spells them.
        CREATED = "created", "Created, not sent to the customer"
        APPROVAL_PENDING = "approvalPending", "Waiting for the customer's approval"
        APPROVED = "approved", "Approved, not active yet"
        ACTIVATING = "activating", "Activating"
        ACTIVE = "active", "Active"
        EXPIRING = "expiring", "Ending (past its end date)"
        EXPIRED = "expired", "Expired"
        TERMINATION_REQUESTED = "terminationRequested", "Termination requested"
        TERMINATING = "terminating", "Terminating"
        TERMINATED = "terminated", "Terminated"
        # Graph's evolvable-enum sentinel; also where any value the panel does not know is stored.
        UNKNOWN = "unknownFutureValue", "A status the panel does not know"

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="gdap_relationships")
    relationship_id = models.CharField(max_length=128, help_text="Graph's id of the relationship.")
    display_name = models.CharField(max_length=200)
    # Null only for a relationship created without a customer, which the customer's approval names.
    customer_tenant_id = models.UUIDField(null=True, blank=True)
    customer_name = models.CharField(max_length=256, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices)
    roles = models.JSONField(
        default=list, help_text="Role definition ids (Entra built-in role template ids)."
    )
    # [{"group": access container id, "type": "securityGroup", "status": "active", "roles": [ids]}]
    access_assignments = models.JSONField(default=list, blank=True)
    duration = models.CharField(max_length=32, blank=True, help_text="ISO 8601, e.g. P730D.")
    auto_extend_duration = models.CharField(max_length=32, blank=True, help_text="PT0S, P0D or P180D.")
    auto_extends = models.BooleanField("auto-extends", default=False)
    requested_at = models.DateTimeField(null=True, blank=True, help_text="Graph's createdDateTime.")
    activated_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Set when a later read no longer lists it (deleted in Partner Center): it then grants nothing.
    gone_at = models.DateTimeField("no longer listed since", null=True, blank=True)

    class Meta:
        verbose_name = "GDAP relationship"
        ordering = ["partner", "ends_at", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "relationship_id"], name="one_row_per_relationship"),
        ]
        indexes = [
            # The broker's check of one customer (tokens.issuance.broker) and the names of a partner's customers.
            models.Index(fields=["partner", "customer_tenant_id"], name="gdap_partner_customer"),
            # The warning sweep and the staff console: active relationships by end date.
            models.Index(
                fields=["ends_at"], condition=Q(status="active", gone_at=None), name="gdap_active_by_end"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_status_display()})"

    def ends_in_days(self, now: datetime) -> int | None:
        """Days until the end date, counting a started day as a day (1 within the last day, 0 or
        less once past), or None without an end date."""
        if self.ends_at is None:
            return None
        return math.ceil((self.ends_at - now) / timedelta(days=1))


class RelationshipWarning(models.Model):
    """An e-mail sent to the partner about a relationship ending soon: at most one per (relationship,
    threshold, end date). A new end date (an extension) can be warned about afresh."""

    id = models.BigAutoField(primary_key=True)
    relationship = models.ForeignKey(Relationship, on_delete=models.CASCADE, related_name="warnings")
    days = models.PositiveIntegerField(help_text="The threshold (one of GDAP_WARNING_DAYS).")
    ends_at = models.DateTimeField(help_text="The end date the warning was about.")
    recipient = models.CharField(max_length=2000)
    sent_at = models.DateTimeField()

    class Meta:
        verbose_name = "GDAP warning sent"
        constraints = [
            models.UniqueConstraint(
                fields=["relationship", "days", "ends_at"], name="one_warning_per_threshold"
            )
        ]

    def __str__(self) -> str:
        return f"{self.days}-day warning for {self.relationship_id}"
