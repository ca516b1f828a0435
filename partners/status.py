"""Suspend and resume a partner (staff). A suspended partner's tokens are refused by the broker,
cached ones included, because the broker checks the partner's status before its cache."""

from __future__ import annotations

from django.db import transaction

from partners.models import Partner
from tokens.audit import Actor, audit_record
from tokens.models import AuditEvent


def partner_status_set(
    *, partner: Partner, status: Partner.Status, actor: Actor, reason: str = ""
) -> Partner:
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.status == status:
            return locked
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.PARTNER_SUSPENDED
            if status == Partner.Status.SUSPENDED
            else AuditEvent.Action.PARTNER_RESUMED,
            partner=locked,
            detail=reason,
        )
    return locked
