from __future__ import annotations

import uuid

from django.db import models


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

    def __str__(self) -> str:
        return f"{self.display_name} ({self.tenant_id})"
