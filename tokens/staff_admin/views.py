"""The staff health page (under the admin, behind its staff + MFA check) and the global kill switch."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from tokens.issuance.killswitch import kill_switch_set
from tokens.staff_admin.base import staff_actor
from tokens.staff_admin.confirm import reason_confirmed
from tokens.staff_admin.health import health_summary_get


@require_http_methods(["GET", "POST"])
def staff_health(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("tokens.change_killswitch"):
            messages.error(request, "You may not change the kill switch.")
            return redirect("admin-health")
        engaged = request.POST.get("kill_switch") == "engage"
        verb = "Engage" if engaged else "Release"
        reason = reason_confirmed(
            request,
            title=f"{verb} the kill switch for all applications",
            explanation="Access-token issuance stops at once for every application and partner, cached tokens "
            "included."
            if engaged
            else "Access-token issuance resumes for every application.",
            button=f"{verb} the kill switch",
            hidden={"kill_switch": "engage" if engaged else "release"},
        )
        if isinstance(reason, HttpResponse):
            return reason
        kill_switch_set(engaged=engaged, actor=staff_actor(request), reason=reason)
        messages.warning(
            request, "Issuance suspended for all applications." if engaged else "Issuance resumed."
        )
        return redirect("admin-health")
    context = {**admin.site.each_context(request), "title": "Health", "summary": health_summary_get()}
    return TemplateResponse(request, "admin/health.html", context)
