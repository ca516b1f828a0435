"""Staff admin for applications, credentials, audit events and alerts; grants (tokens/staff_admin/grants.py),
kill switches (tokens/staff_admin/kill_switch.py) and service clients (tokens/staff_admin/service_clients.py)
have their own modules, registered by TokensConfig.ready.

Token material and secrets are never shown (EncryptedFieldsAdminMixin masks them and keeps them out
of every form). State changes go through services, never through a form, so each is audited with
the staff user: the kill switch on applications, closing an alert.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from gdap.names import customer_label, customer_names_attach
from partners.search import partners_search, search_uuid
from tokens.audit_pages import audit_count_capped, audit_page_get, cursor_decode
from tokens.encryption.admin import EncryptedFieldsAdminMixin
from tokens.models import Application, ApplicationCredential, AuditEvent, ConsentGrant, OperatorAlert
from tokens.renewal.alerts import AlertAlreadyClosed, operator_alert_close
from tokens.staff_admin.base import ReadOnlyAdmin, StaffChangesAudited, staff_actor
from tokens.staff_admin.kill_switch import kill_switch_action

# The audit list counts matching events up to this many, and says "more than" beyond.
AUDIT_ADMIN_COUNT_CAP = 10_000


@admin.register(Application)
class ApplicationAdmin(StaffChangesAudited):
    list_display = ["name", "client_id", "authority_host", "policy_days", "created_at"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["created_at"]
    actions = ["kill_switch_engage", "kill_switch_release"]
    audit_created = AuditEvent.Action.APPLICATION_CREATED
    audit_changed = AuditEvent.Action.APPLICATION_CHANGED
    # An authority or redirect URI typed without a scheme is meant as HTTPS (Entra accepts http
    # redirect URIs for localhost only).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def audit_application(self, obj: Application) -> Application:
        return obj

    @admin.action(description="Engage the kill switch (suspend issuance) for the selected applications")
    def kill_switch_engage(
        self, request: HttpRequest, queryset: QuerySet[Application]
    ) -> HttpResponse | None:
        return kill_switch_action(self, request, "kill_switch_engage", list(queryset), engage=True)

    @admin.action(description="Release the kill switch (resume issuance) for the selected applications")
    def kill_switch_release(
        self, request: HttpRequest, queryset: QuerySet[Application]
    ) -> HttpResponse | None:
        return kill_switch_action(self, request, "kill_switch_release", list(queryset), engage=False)


@admin.register(ApplicationCredential)
class ApplicationCredentialAdmin(EncryptedFieldsAdminMixin, StaffChangesAudited):
    # Credentials are added by `manage.py sync_application` (the secret never passes a form);
    # staff may only disable one.
    list_display = [
        "application",
        "kind",
        "certificate_thumbprint",
        "not_before",
        "expires_at",
        "disabled_at",
        "refused_at",
        "refused_code",
        "created_at",
    ]
    list_filter = ["kind", "application", "expires_at", ("refused_at", admin.EmptyFieldListFilter)]
    list_select_related = ["application"]
    search_fields = ["application__name", "application__client_id", "certificate_thumbprint"]
    raw_id_fields = ["application"]
    fields = [
        "application",
        "kind",
        "secret",
        "key_vault_id",
        "certificate_thumbprint",
        "not_before",
        "expires_at",
        "disabled_at",
        "refused_at",
        "refused_code",
        "created_at",
    ]
    readonly_fields = [
        "application", "kind", "key_vault_id", "certificate_thumbprint", "not_before", "expires_at",
        "refused_at", "refused_code", "created_at",
    ]  # fmt: skip
    audit_changed = AuditEvent.Action.CREDENTIAL_CHANGED

    def audit_application(self, obj: ApplicationCredential) -> Application:
        return obj.application

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class AuditEventChangeList(ChangeList):
    """The audit list paged by key (tokens/audit_pages.py), newest first: each page is one index
    range scan however deep, and the count stops at AUDIT_ADMIN_COUNT_CAP."""

    def get_results(self, request: HttpRequest) -> None:
        before, after = getattr(request, "audit_cursors", (None, None))
        events = self.queryset.order_by()
        page = audit_page_get(events=events, size=self.list_per_page, before=before, after=after)
        customer_names_attach(events=page.events)  # the customer column: one query for the page
        count = audit_count_capped(events=events, cap=AUDIT_ADMIN_COUNT_CAP)
        self.audit_page = page
        self.result_list = page.events
        self.result_count = min(count, AUDIT_ADMIN_COUNT_CAP)
        self.result_count_capped = count > AUDIT_ADMIN_COUNT_CAP
        self.show_full_result_count = False
        self.full_result_count = None
        self.show_admin_actions = False
        self.can_show_all = False
        self.multi_page = page.newer is not None or page.older is not None
        self.paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        self.newer_query = self.get_query_string({"after": page.newer.encode()}) if page.newer else ""
        self.older_query = self.get_query_string({"before": page.older.encode()}) if page.older else ""


class GrantEventsFilter(admin.SimpleListFilter):
    """`?grant=<id>`: one grant's events (the grant's page links here). Shown only when asked
    for. Read through the (partner, at, id) index: a partner has a grant per application only."""

    title = "grant"
    parameter_name = "grant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if self.value() is None:
            return []
        grant = self._grant()
        name = f"{grant.application.name} for {grant.partner.display_name}" if grant else "No such grant"
        return [(str(self.value()), name)]

    def _grant(self) -> ConsentGrant | None:
        if not hasattr(self, "_found"):
            grant_id = search_uuid(str(self.value()))
            self._found = (
                ConsentGrant.objects.select_related("partner", "application").filter(pk=grant_id).first()
                if grant_id
                else None
            )
        return self._found

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        if self.value() is None:
            return queryset
        grant = self._grant()
        if grant is None:
            return queryset.none()
        return queryset.filter(partner_id=grant.partner_id, grant_id=grant.pk)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "at", "action", "outcome", "actor_type", "actor_id", "partner", "application", "audience",
        "customer", "purpose", "error_code",
    ]  # fmt: skip
    readonly_fields = ["customer"]
    # The date filter offers today / 7 days / this month / this year: ranges on the (at, id) index.
    # No date_hierarchy: its drill-down reads the distinct years and months of the whole table.
    list_filter = [GrantEventsFilter, "action", "outcome", "actor_type", "application", "at"]
    list_select_related = ["partner", "application"]
    # Searched through indexes only (get_search_results): a partner's name or tenant id, an id.
    search_fields = ["partner__display_name"]
    search_help_text = (
        "A partner's name (its beginning) or tenant id, a partner or grant id, or an event number."
    )
    # Newest first by key; sorting by another column would need OFFSET paging again.
    sortable_by = ()
    show_full_result_count = False
    # Rendering the rows is most of a page's time (bench/scale.py profile: ~75 % at 100 rows).
    list_per_page = 50
    actions = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditEventChangeList

    @admin.display(description="customer")
    def customer(self, obj: AuditEvent) -> str:
        """The customer's name from the partner's GDAP inventory (gdap.names), with its tenant id."""
        if not obj.customer_tenant_id:
            return ""
        name = getattr(obj, "customer_name", None)
        if name is None:  # the event's own page: not attached by the changelist
            return customer_label(partner_id=obj.partner_id, tenant_id=obj.customer_tenant_id)
        if not name:
            return str(obj.customer_tenant_id)
        return format_html('<span title="Tenant {}">{}</span>', obj.customer_tenant_id, name)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # The cursors are not filters: taken out before the changelist reads the query string.
        query = request.GET.copy()
        request.audit_cursors = (  # type: ignore[attr-defined]
            cursor_decode(query.pop("before", [""])[-1]),
            cursor_decode(query.pop("after", [""])[-1]),
        )
        request.GET = query  # type: ignore[assignment]
        return super().changelist_view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(id=int(term)), False
        as_uuid = search_uuid(term)
        if as_uuid is not None:
            grant_partner = ConsentGrant.objects.filter(pk=as_uuid).values("partner_id")
            partners = list(partners_search(term=term).values_list("id", flat=True))
            partners += list(grant_partner.values_list("partner_id", flat=True))
            return queryset.filter(partner_id__in=partners), False
        return queryset.filter(
            partner_id__in=list(partners_search(term=term).values_list("id", flat=True))
        ), False


@admin.register(OperatorAlert)
class OperatorAlertAdmin(ReadOnlyAdmin):
    list_display = [
        "code",
        "application",
        "pauses",
        "message",
        "occurrences",
        "first_seen_at",
        "last_seen_at",
        "resolved_at",
        "resolved_by",
        "resolution",
    ]
    list_filter = ["pauses", "application", ("resolved_at", admin.EmptyFieldListFilter)]
    list_select_related = ["application"]
    actions = ["close"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_close_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    @admin.action(description="Close the selected alerts, with a reason", permissions=["close"])
    def close(self, request: HttpRequest, queryset: QuerySet[OperatorAlert]) -> TemplateResponse | None:
        """An intermediate page asks for the reason; the closes go through the service (audited)."""
        reason = request.POST.get("reason", "").strip()
        if "confirm" not in request.POST or not reason:
            context = {
                **self.admin_site.each_context(request),
                "title": "Close operator alerts",
                "alerts": queryset.select_related("application"),
                "missing_reason": "confirm" in request.POST,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/tokens/operatoralert/close.html", context)
        closed = 0
        for alert_id in queryset.filter(resolved_at=None).values_list("pk", flat=True):
            try:
                operator_alert_close(alert_id=alert_id, actor=staff_actor(request), reason=reason)
            except AlertAlreadyClosed:
                continue  # closed meanwhile (a probe succeeded, or another staff member)
            closed += 1
        self.message_user(request, f"{closed} alert(s) closed.")
        return None
