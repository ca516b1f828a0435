"""A confirmation page that asks for a reason before a grave staff action (the kill switch, a
partner's suspension). The reason goes to the audit trail with the action."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

CONFIRMED_FIELD = "confirmed"


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason (recorded in the audit trail)",
        max_length=500,
        error_messages={
            "required": "A reason is required: it is recorded in the audit trail with the action."
        },
        widget=forms.TextInput(attrs={"size": 60, "autofocus": True}),
    )


def reason_confirmed(
    request: HttpRequest,
    *,
    title: str,
    explanation: str,
    button: str,
    objects: Iterable[object] = (),
    hidden: Mapping[str, str | list[str]] | None = None,
    cancel_url: str = "",
) -> str | HttpResponse:
    """The reason, once the staff user confirmed with one; until then, the confirmation page (which
    posts the same request back with the reason and the confirmation; Cancel goes to cancel_url,
    by default the page the action came from)."""
    form = ReasonForm(request.POST if CONFIRMED_FIELD in request.POST else None)
    if form.is_valid():
        return str(form.cleaned_data["reason"]).strip()
    fields = [(name, value) for name, values in (hidden or {}).items() for value in _listed(values)]
    context = {
        **admin.site.each_context(request),
        "title": title,
        "explanation": explanation,
        "button": button,
        "objects": [str(obj) for obj in objects],
        "hidden_fields": fields,
        "form": form,
        "confirmed_field": CONFIRMED_FIELD,
        "cancel_url": cancel_url or request.path,
    }
    return TemplateResponse(request, "admin/confirm_with_reason.html", context)


def _listed(values: str | list[str]) -> list[str]:
    return [values] if isinstance(values, str) else values


def action_hidden_fields(request: HttpRequest, action: str) -> dict[str, str | list[str]]:
    """What the changelist needs to run the same admin action again on the same selection."""
    return {
        "action": action,
        ACTION_CHECKBOX_NAME: request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
