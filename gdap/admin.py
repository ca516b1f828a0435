"""Staff admin of the GDAP inventory: every partner's relationships (customer names, status, end
date, "ends in N days"), filtered by how soon they end, and each partner's last read. Read-only:
the rows come from Microsoft Graph; staff may only ask for a fresh read ("Refresh now"), which the
audit trail records as the Graph token issued with the staff user as actor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from gdap.inventory import gdap_inventory_refresh_now
from gdap.models import Inventory, Relationship
from gdap.roles import role_name
from tokens.staff_admin.base import ReadOnlyAdmin


class EndsWithinFilter(admin.SimpleListFilter):
    """Active relationships (still listed) by how soon they end; auto-extended ones included, as
    their end date still stands until Microsoft extends it."""

    title = "ends"
    parameter_name = "ends"
    CHOICES = (("7", "within 7 days"), ("30", "within 30 days"), ("ended", "already ended"))

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return self.CHOICES

    def queryset(self, request: HttpRequest, queryset: QuerySet[Relationship]) -> QuerySet[Relationship]:
        now = timezone.now()
        if self.value() in ("7", "30"):
            return queryset.filter(
                status=Relationship.Status.ACTIVE,
                gone_at=None,
                ends_at__gt=now,
                ends_at__lte=now + timedelta(days=int(str(self.value()))),
            )
        if self.value() == "ended":
            return queryset.filter(Q(ends_at__lte=now) | Q(status__in=["expired", "terminated"]))
        return queryset


def _refresh(modeladmin: admin.ModelAdmin, request: HttpRequest, partner_ids: list[str]) -> None:
    enqueued = gdap_inventory_refresh_now(partner_ids=partner_ids, requested_by=str(request.user.pk))
    modeladmin.message_user(
        request,
        f"A read of the GDAP relationships of {enqueued} partner(s) is queued"
        + (
            f"; {len(partner_ids) - enqueued} already had one queued." if enqueued < len(partner_ids) else "."
        ),
        messages.SUCCESS,
    )


@admin.register(Relationship)
class RelationshipAdmin(ReadOnlyAdmin):
    list_display = [
        "customer", "display_name", "partner_name", "status", "ends_at", "ends_in", "auto_extends", "gone_at",
    ]  # fmt: skip
    list_filter = [EndsWithinFilter, "status", "auto_extends", ("gone_at", admin.EmptyFieldListFilter)]
    list_select_related = ["partner"]
    search_fields = ["^customer_name", "^display_name", "^partner__display_name"]
    search_help_text = "The beginning of a customer's, a relationship's or a partner's name."
    ordering = ["ends_at", "display_name"]
    actions = ["refresh_now"]
    readonly_fields = ["role_names", "assignments"]

    @admin.display(description="customer", ordering="customer_name")
    def customer(self, obj: Relationship) -> str:
        if obj.customer_name:
            return format_html('<span title="Tenant {}">{}</span>', obj.customer_tenant_id, obj.customer_name)
        return str(obj.customer_tenant_id or "(not named yet)")

    @admin.display(description="partner", ordering="partner__display_name")
    def partner_name(self, obj: Relationship) -> str:
        return obj.partner.display_name

    @admin.display(description="ends in", ordering="ends_at")
    def ends_in(self, obj: Relationship) -> str:
        now = timezone.now()
        days = obj.ends_in_days(now)
        if days is None:
            return "-"
        if days <= 0 or obj.status in (Relationship.Status.EXPIRED, Relationship.Status.TERMINATED):
            return "ended"
        return f"{days} day{'' if days == 1 else 's'}" + (" (auto-extends)" if obj.auto_extends else "")

    @admin.display(description="roles")
    def role_names(self, obj: Relationship) -> str:
        return format_html_join(", ", "{}", ((role_name(r),) for r in obj.roles)) or "-"

    @admin.display(description="access assignments")
    def assignments(self, obj: Relationship) -> str:
        return (
            format_html_join(
                "",
                "<div>{} {} ({}): {}</div>",
                (
                    (
                        a.get("type", ""),
                        a.get("group", ""),
                        a.get("status", ""),
                        ", ".join(role_name(r) for r in a.get("roles", [])),
                    )
                    for a in obj.access_assignments
                ),
            )
            or "-"
        )

    @admin.action(description="Read these partners' relationships again now")
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Relationship]) -> None:
        _refresh(self, request, [str(pk) for pk in queryset.values_list("partner_id", flat=True).distinct()])


@admin.register(Inventory)
class InventoryAdmin(ReadOnlyAdmin):
    list_display = ["partner_name", "read_at", "attempted_at", "error_code", "error"]
    list_filter = [("read_at", admin.EmptyFieldListFilter), ("error_code", admin.EmptyFieldListFilter)]
    list_select_related = ["partner"]
    search_fields = ["^partner__display_name"]
    actions = ["refresh_now"]

    @admin.display(description="partner", ordering="partner__display_name")
    def partner_name(self, obj: Inventory) -> str:
        return obj.partner.display_name

    @admin.action(description="Read these partners' relationships again now")
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Inventory]) -> None:
        _refresh(self, request, [str(pk) for pk in queryset.values_list("partner_id", flat=True)])
