from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models.functions import Upper


class AgentRole(models.TextChoices):
    """Partner Center agent roles, as Partner Center's own roles API reports them (partners.partner_center)."""

    ADMIN_AGENT = "admin_agent", "Admin agent"
    SALES_AGENT = "sales_agent", "Sales agent"


class Partner(models.Model):
    """A CSP partner, identified by its Entra tenant. Created by the first successful consent."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended by staff"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.UUIDField(unique=True, help_text="The partner's Entra tenant id (tid).")
    display_name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_name"]
        # Staff search a partner by the beginning of its name, in any case (partners/search.py):
        # UPPER(display_name) LIKE 'TERM%' uses this index whatever the database's collation.
        indexes = [
            models.Index(OpClass(Upper("display_name"), name="text_pattern_ops"), name="partner_name_upper"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.tenant_id})"


class PartnerUser(models.Model):
    """A person of a partner tenant who signed in to the dashboard. Not a Django user on purpose:
    partner identities come only from the identity provider (no password can exist), and they can
    never satisfy the staff checks of the admin. The session holds this row's id."""

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="users")
    object_id = models.UUIDField(help_text="The user's Entra object id (oid) in the partner tenant.")
    upn = models.CharField(max_length=254)
    display_name = models.CharField(max_length=200, blank=True)
    # Asked of Partner Center at each sign-in, so a change of role there takes effect at the next
    # sign-in (sessions are short: see SESSION_COOKIE_AGE).
    role = models.CharField(max_length=16, choices=AgentRole.choices)
    first_signed_in_at = models.DateTimeField(auto_now_add=True)
    last_signed_in_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "object_id"], name="one_user_per_partner_and_oid")
        ]
        ordering = ["upn"]

    def __str__(self) -> str:
        return f"{self.upn} ({self.get_role_display()})"

    @property
    def may_change_grants(self) -> bool:
        return self.role == AgentRole.ADMIN_AGENT
