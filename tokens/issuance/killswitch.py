"""The kill switch: suspend all access-token issuance at once, for one application or all.

The broker reads it in its grant query (`tokens.issuance.broker.grants_find`), on every token request."""

from __future__ import annotations

from django.db import transaction

from tokens.audit import Actor, audit_record
from tokens.models import Application, AuditEvent, KillSwitch


def kill_switch_set(
    *, engaged: bool, actor: Actor, application: Application | None = None, reason: str = ""
) -> KillSwitch:
    with transaction.atomic():
        switch, _ = KillSwitch.objects.select_for_update().get_or_create(application=application)
        switch.engaged = engaged
        switch.reason = reason[:500]
        switch.save(update_fields=["engaged", "reason", "changed_at"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.KILL_SWITCH_ENGAGED
            if engaged
            else AuditEvent.Action.KILL_SWITCH_RELEASED,
            application=application,
            detail=reason or ("all applications" if application is None else ""),
        )
    return switch
