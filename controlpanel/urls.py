from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django_otp.admin import OTPAdminSite

from controlpanel.metrics import metrics
from controlpanel.views import healthz
from tokens.admin_views import staff_health
from tokens.api import api

# Staff MFA: the admin admits only users verified with a confirmed OTP device (TOTP) in this
# session; its login form asks for the one-time code along with the password.
admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="partners:onboarding", permanent=False)),
    path("admin/health/", admin.site.admin_view(staff_health), name="admin-health"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", api.urls),
    path("", include("partners.urls")),
]
