"""Staff changes made in the admin, each with an audit row saying who changed what.

Forms in the admin save the row; these functions write the audit event in the same transaction
(the admin's change view runs in one) and describe the change from the form, field by field.
None of the audited models' editable fields holds a secret (encrypted fields are never in a form).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.db import models, transaction
from django.utils import timezone

from tokens.audit import Actor, audit_record
from tokens.models import Application, AuditEvent, ServiceClient

DETAIL_MAX = 500


def _shown(value: Any) -> str:
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | dict):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return "—" if value in (None, "") else str(value)


def form_changes_describe(*, form: forms.BaseForm, created: bool) -> str:
    """`field: before → after` for each changed field (every field, as `field: value`, when the row
    is new); empty when nothing changed (a form may flag a JSON field whose value is the same)."""
    if created:
        return "; ".join(f"{name}: {_shown(form.cleaned_data.get(name))}" for name in form.fields)
    changes = [
        (name, _shown(form.initial.get(name)), _shown(form.cleaned_data.get(name)))
        for name in form.changed_data
    ]
    return "; ".join(f"{name}: {before} → {after}" for name, before, after in changes if before != after)


def staff_change_record(
    *,
    actor: Actor,
    action: AuditEvent.Action,
    subject: models.Model,
    changes: str,
    application: Application | None = None,
) -> AuditEvent:
    return audit_record(
        actor=actor,
        action=action,
        application=application,
        detail=f"{subject._meta.verbose_name} '{subject}': {changes}"[:DETAIL_MAX],
    )


def service_client_enabled_set(*, client: ServiceClient, enabled: bool, actor: Actor) -> bool:
    """Disable (its key stops working at once) or enable a client; False when nothing changed."""
    with transaction.atomic():
        locked = ServiceClient.objects.select_for_update().get(pk=client.pk)
        if (locked.disabled_at is None) == enabled:
            return False
        locked.disabled_at = None if enabled else timezone.now()
        locked.save(update_fields=["disabled_at"])
        staff_change_record(
            actor=actor,
            action=AuditEvent.Action.SERVICE_CLIENT_ENABLED
            if enabled
            else AuditEvent.Action.SERVICE_CLIENT_DISABLED,
            subject=locked,
            changes="enabled" if enabled else "disabled",
        )
    return True
