"""The kill switch in the staff admin: engaging or releasing one goes through a confirmation page
that asks for a reason (recorded in the audit trail); the list says ENGAGED in red, Released in
green, in words as well as colour."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from tokens.issuance.killswitch import kill_switch_set
from tokens.models import Application, KillSwitch
from tokens.staff_admin.badges import badge
from tokens.staff_admin.base import ReadOnlyAdmin, staff_actor
from tokens.staff_admin.confirm import action_hidden_fields, reason_confirmed


def kill_switch_action(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    action: str,
    applications: list[Application | None],
    *,
    engage: bool,
) -> HttpResponse | None:
    """Engage or release the kill switch of these applications (None: all applications) once the
    staff user confirmed with a reason; until then, the confirmation page."""
    verb = "Engage" if engage else "Release"
    reason = reason_confirmed(
        request,
        title=f"{verb} the kill switch",
        explanation=(
            "Access-token issuance stops at once for these, cached tokens included."
            if engage
            else "Access-token issuance resumes for these."
        ),
        button=f"{verb} the kill switch",
        objects=[application or "all applications" for application in applications],
        hidden=action_hidden_fields(request, action),
    )
    if isinstance(reason, HttpResponse):
        return reason
    for application in applications:
        kill_switch_set(engaged=engage, actor=staff_actor(request), application=application, reason=reason)
    if engage:
        modeladmin.message_user(request, f"Issuance suspended for {len(applications)}.", messages.WARNING)
    else:
        modeladmin.message_user(request, f"Issuance resumed for {len(applications)}.")
    return None


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ["scope", "engaged_badge", "reason", "changed_at"]
    list_display_links = ["scope"]
    list_select_related = ["application"]
    actions = ["engage", "release"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Kill switches", **(extra_context or {})})

    @admin.display(description="Scope", ordering="application__name")
    def scope(self, switch: KillSwitch) -> str:
        return switch.application.name if switch.application else "All applications"

    @admin.display(description="State", ordering="engaged")
    def engaged_badge(self, switch: KillSwitch) -> SafeString:
        if switch.engaged:
            return badge("ENGAGED", "bad", title="Token issuance is suspended")
        return badge("Released", "ok", title="Tokens are issued normally")

    @admin.action(description="Engage (suspend issuance), with a reason")
    def engage(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> HttpResponse | None:
        applications = [switch.application for switch in queryset.select_related("application")]
        return kill_switch_action(self, request, "engage", applications, engage=True)

    @admin.action(description="Release (resume issuance), with a reason")
    def release(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> HttpResponse | None:
        applications = [switch.application for switch in queryset.select_related("application")]
        return kill_switch_action(self, request, "release", applications, engage=False)
