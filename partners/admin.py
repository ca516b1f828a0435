"""Staff admin for partners and partner users. Suspend and resume go through partner_status_set,
audited with the staff user; partner users are written by the dashboard sign-in only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from partners.models import Partner, PartnerUser
from partners.search import partners_search
from partners.status import partner_status_set
from tokens.admin import ReadOnlyAdmin, staff_actor


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
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
    def suspend(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        for partner in queryset:
            partner_status_set(partner=partner, status=Partner.Status.SUSPENDED, actor=staff_actor(request))
        self.message_user(request, f"{len(queryset)} partner(s) suspended.", messages.WARNING)

    @admin.action(description="Resume the selected partners")
    def resume(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        for partner in queryset:
            partner_status_set(partner=partner, status=Partner.Status.ACTIVE, actor=staff_actor(request))
        self.message_user(request, f"{len(queryset)} partner(s) resumed.")


@admin.register(PartnerUser)
class PartnerUserAdmin(ReadOnlyAdmin):
    list_display = ["upn", "display_name", "partner", "role", "last_signed_in_at"]
    list_filter = ["role"]
    list_select_related = ["partner"]
    search_fields = ["upn", "display_name", "partner__display_name", "partner__tenant_id"]
