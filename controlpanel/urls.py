from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from controlpanel.views import healthz
from tokens.api import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="partners:onboarding", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", api.urls),
    path("", include("partners.urls")),
]
