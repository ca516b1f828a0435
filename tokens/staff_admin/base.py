"""What every staff admin page shares: the staff actor of the audit trail, the check of an admin
action's selection, and the two kinds of admin (audited changes; read-only rows)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from tokens.audit import Actor
from tokens.models import Application, AuditEvent
from tokens.staff_admin.staff_changes import form_changes_describe, staff_change_record

FORGED_SELECTION = "The selection names rows that cannot exist. No items have been changed."
VANISHED_SELECTION = "None of the selected rows exists (any more). No items have been changed."


def staff_actor(request: HttpRequest) -> Actor:
    return Actor.staff(request.user.pk or "", request.META.get("REMOTE_ADDR"))


class SelectionCheckedAdmin(admin.ModelAdmin):
    """Admin actions refuse a selection whose ids are not even of the primary key's type (a forged
    or mangled form), with a message: Django's own changelist would answer it with a 500 when it
    filters on them. A selection of ids that exist nowhere is refused too (Django would run the
    action on nothing and report "0 changed"). Every staff page has the console's stylesheet
    (badges, buttons)."""

    class Media:
        css = {"all": ["tokens/staff_admin.css"]}

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        try:
            for value in selected:
                self.opts.pk.to_python(value)
        except ValidationError:
            self.message_user(request, FORGED_SELECTION, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        across = request.POST.get("select_across") == "1"
        if selected and not across and not queryset.filter(pk__in=selected).exists():
            self.message_user(request, VANISHED_SELECTION, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


class StaffChangesAudited(SelectionCheckedAdmin):
    """Every add and change through the form writes an audit row saying what changed; rows are not
    deleted from the admin (disable them instead), so nothing disappears unaudited."""

    audit_created: AuditEvent.Action
    audit_changed: AuditEvent.Action

    def audit_application(self, obj: Any) -> Application | None:
        return None

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        super().save_model(request, obj, form, change)
        changes = form_changes_describe(form=form, created=not change)
        if changes:
            staff_change_record(
                actor=staff_actor(request),
                action=self.audit_changed if change else self.audit_created,
                subject=obj,
                changes=changes,
                application=self.audit_application(obj),
            )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(SelectionCheckedAdmin):
    """Rows written by services only: staff may look, not add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
