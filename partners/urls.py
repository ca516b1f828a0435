from __future__ import annotations

from django.urls import path

from partners.views import onboarding

app_name = "partners"

urlpatterns = [
    path("onboarding/", onboarding.onboarding, name="onboarding"),
    path("onboarding/connect/", onboarding.onboarding_connect, name="onboarding-connect"),
    path("onboarding/callback/", onboarding.onboarding_callback, name="onboarding-callback"),
]
