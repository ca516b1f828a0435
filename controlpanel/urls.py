from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from console.views import console_home, console_models
from controlpanel.metrics import metrics
from controlpanel.staff_login import StaffAdminSite
from controlpanel.views import healthz, healthz_renewal
from tokens.service_api.api import api
from tokens.staff_admin.views import staff_health

# Staff MFA: the admin admits only users verified with a confirmed authenticator (TOTP) in this
# session; its one-step login form asks for the code along with the password.
admin.site.__class__ = StaffAdminSite

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="partners:onboarding", permanent=False)),
    # The admin's home is the staff console's overview; its list of models moves to admin/models/.
    path("admin/", admin.site.admin_view(console_home), name="console-home"),
    path("admin/models/", admin.site.admin_view(console_models), name="console-models"),
    path("admin/health/", admin.site.admin_view(staff_health), name="admin-health"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("healthz/renewal", healthz_renewal, name="healthz-renewal"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", api.urls),
    path("", include("partners.urls")),
]
