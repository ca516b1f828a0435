"""Admin for service clients, in its own module (imported by TokensConfig.ready) so that it does
not collide with the staff admin in tokens/admin.py.

Audiences are ticked from the configured ones (SAM_AUDIENCES), networks typed one per line. The
key digest is never shown. A new client's key is shown once, on the page that answers the "add"
form, rendered straight into that response: not through the messages framework, which would park
it in a cookie or the session store until the next page. That page's script (static, as the CSP
requires) copies the key and replaces the page's address with the client's, so that reloading it
asks for the client's page, not the form again."""

from __future__ import annotations

import ipaddress
from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokens.audiences import audience_choices, audience_names
from tokens.models import AuditEvent, ServiceClient
from tokens.service_api.service_clients import service_client_key_assign
from tokens.staff_admin.base import StaffChangesAudited, staff_actor
from tokens.staff_admin.staff_changes import service_client_enabled_set

# The plaintext key between save_model() and response_add() of the same request, and no longer.
_issued_keys: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


class NetworksField(forms.Field):
    """Networks one per line (an address alone is its own network); a list of networks in CIDR
    form. Blank lines are skipped; a line that is not a network is named in the error."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 40, "spellcheck": "false", "autocapitalize": "off"})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(map(str, value)) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        networks: list[str] = []
        for number, line in enumerate(str(value or "").splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            try:
                # strict=False: "10.1.2.3/8" means the network 10.0.0.0/8, as operators write it.
                networks.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                raise forms.ValidationError(
                    "Line %(number)s, “%(text)s”, is not a network: write one address or network per "
                    "line, such as 10.0.0.0/8 or 2001:db8::/32.",
                    code="invalid_network",
                    params={"number": number, "text": text[:60]},
                ) from None
        return networks

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(self.prepare_value(initial)) != self.to_python(data)
        except forms.ValidationError:
            return True


class ServiceClientForm(forms.ModelForm):
    audiences = forms.MultipleChoiceField(
        choices=audience_choices,
        # "radiolist": the admin's own style for a list of choices beside its label.
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist"}),
        error_messages={"required": "Choose at least one audience the client may ask tokens for."},
        help_text="The audiences it may ask access tokens for.",
    )
    cidrs = NetworksField(
        label="Allowed networks",
        required=False,
        help_text="One address or network per line, e.g. 10.0.0.0/8. Empty: any address.",
    )

    class Meta:
        model = ServiceClient
        fields = ("name", "audiences", "partners", "cidrs", "rate_limit_per_minute")


@admin.register(ServiceClient)
class ServiceClientAdmin(StaffChangesAudited):
    form = ServiceClientForm
    list_display = ("name", "audience_words", "rate_limit_per_minute", "disabled_at", "last_used_at")
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

    def get_fields(self, request: HttpRequest, obj: ServiceClient | None = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        # A new client has no key id, use or creation time yet: the add form asks only what to set.
        return fields if obj is not None else [name for name in fields if name not in self.readonly_fields]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Saving shows the key page whichever button is pressed: one Save button, not three.
        context = {
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, context)

    @admin.display(description="Audiences")
    def audience_words(self, client: ServiceClient) -> str:
        return ", ".join(audience_names(str(name) for name in client.audiences))

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
            {
                **self.admin_site.each_context(request),
                "title": f"Key for {obj.name}",
                "client": obj,
                "key": key,
                "opts": self.opts,
            },
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
