"""Admin for service clients, in its own module (imported by TokensConfig.ready) so that it does
not collide with the staff admin in tokens/admin.py.

The key digest is never shown. A new client's key is shown once, on the page that answers the
"add" form, rendered straight into that response: not through the messages framework, which
would park it in a cookie or the session store until the next page."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokens.admin import StaffChangesAudited, staff_actor
from tokens.models import AuditEvent, ServiceClient
from tokens.service_api.service_clients import service_client_key_assign
from tokens.staff_admin.staff_changes import service_client_enabled_set

# The plaintext key between save_model() and response_add() of the same request, and no longer.
_issued_keys: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


@admin.register(ServiceClient)
class ServiceClientAdmin(StaffChangesAudited):
    list_display = ("name", "audiences", "rate_limit_per_minute", "disabled_at", "last_used_at")
    list_filter = (("disabled_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "key_id")
    fields = (
        "name",
        "audiences",
        "partners",
        "cidrs",
        "rate_limit_per_minute",
        "key_id",
        "disabled_at",
        "last_used_at",
        "created_at",
    )
    readonly_fields = ("key_id", "disabled_at", "last_used_at", "created_at")
    filter_horizontal = ("partners",)
    actions = ("disable", "enable")
    audit_created = AuditEvent.Action.SERVICE_CLIENT_CREATED
    audit_changed = AuditEvent.Action.SERVICE_CLIENT_CHANGED

    def save_model(
        self, request: HttpRequest, obj: ServiceClient, form: ModelForm[ServiceClient], change: bool
    ) -> None:
        if not change:
            _issued_keys[request] = service_client_key_assign(client=obj)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ServiceClient, post_url_continue: str | None = None
    ) -> HttpResponse:
        key = _issued_keys.pop(request, None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        # The admin's views are never_cache: this page is not stored by the browser either.
        return TemplateResponse(
            request,
            "admin/tokens/serviceclient/key_issued.html",
            {**self.admin_site.each_context(request), "client": obj, "key": key, "opts": self.opts},
        )

    @admin.action(description="Disable the selected clients (their keys stop working at once)")
    def disable(self, request: HttpRequest, queryset: QuerySet[ServiceClient]) -> None:
        count = sum(
            service_client_enabled_set(client=client, enabled=False, actor=staff_actor(request))
            for client in queryset
        )
        self.message_user(request, f"{count} client(s) disabled.", messages.SUCCESS)

    @admin.action(description="Enable the selected clients")
    def enable(self, request: HttpRequest, queryset: QuerySet[ServiceClient]) -> None:
        count = sum(
            service_client_enabled_set(client=client, enabled=True, actor=staff_actor(request))
            for client in queryset
        )
        self.message_user(request, f"{count} client(s) enabled.", messages.SUCCESS)
