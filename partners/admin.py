"""Staff admin for partners and partner users. Suspend and resume go through partner_status_set,
audited with the staff user; partner users are written by the dashboard sign-in only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from partners.models import Partner, PartnerUser
from partners.search import partners_search
from partners.status import partner_status_set
from tokens.staff_admin.base import ReadOnlyAdmin, SelectionCheckedAdmin, staff_actor
from tokens.staff_admin.confirm import action_hidden_fields, reason_confirmed


@admin.register(Partner)
class PartnerAdmin(SelectionCheckedAdmin):
    list_display = ["display_name", "tenant_id", "domain", "status", "created_at"]
    list_filter = ["status"]
    # Searched through indexes only (partners/search.py): the name's beginning, a tenant id or an id.
    search_fields = ["display_name"]
    search_help_text = "A partner's name (its beginning), tenant id or id."
    readonly_fields = ["tenant_id", "status", "created_at"]
    fields = ["display_name", "domain", "tenant_id", "status", "created_at"]
    actions = ["suspend", "resume"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Partner], search_term: str
    ) -> tuple[QuerySet[Partner], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(id__in=partners_search(term=search_term).values("id")), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # partners are created by their own consent

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # grants and the audit trail refer to them

    @admin.action(description="Suspend (refuse every token of the selected partners)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Partner]) -> HttpResponse | None:
        return self._status_set(request, queryset, Partner.Status.SUSPENDED)

    @admin.action(description="Resume the selected partners")
    def resume(self, request: HttpRequest, queryset: QuerySet[Partner]) -> HttpResponse | None:
        return self._status_set(request, queryset, Partner.Status.ACTIVE)

    def _status_set(
        self, request: HttpRequest, queryset: QuerySet[Partner], status: Partner.Status
    ) -> HttpResponse | None:
        suspend = status == Partner.Status.SUSPENDED
        reason = reason_confirmed(
            request,
            title="Suspend partners" if suspend else "Resume partners",
            explanation="Every token of these partners is refused at once, cached ones included."
            if suspend
            else "These partners' tokens are issued again.",
            button="Suspend" if suspend else "Resume",
            objects=queryset,
            hidden=action_hidden_fields(request, "suspend" if suspend else "resume"),
        )
        if isinstance(reason, HttpResponse):
            return reason
        for partner in queryset:
            partner_status_set(partner=partner, status=status, actor=staff_actor(request), reason=reason)
        if suspend:
            self.message_user(request, f"{len(queryset)} partner(s) suspended.", messages.WARNING)
        else:
            self.message_user(request, f"{len(queryset)} partner(s) resumed.")
        return None


@admin.register(PartnerUser)
class PartnerUserAdmin(ReadOnlyAdmin):
    list_display = ["upn", "display_name", "partner", "role", "last_signed_in_at"]
    list_filter = ["role"]
    list_select_related = ["partner"]
    search_fields = ["upn", "display_name", "partner__display_name", "partner__tenant_id"]
