from __future__ import annotations

from django.urls import path

from partners.views import dashboard, onboarding

app_name = "partners"

urlpatterns = [
    path("onboarding/", onboarding.onboarding, name="onboarding"),
    path("onboarding/connect/", onboarding.onboarding_connect, name="onboarding-connect"),
    path("onboarding/callback/", onboarding.onboarding_callback, name="onboarding-callback"),
    path("onboarding/confirm/", onboarding.onboarding_confirm, name="onboarding-confirm"),
    path("onboarding/done/", onboarding.onboarding_done, name="onboarding-done"),
    path("onboarding/failed/", onboarding.onboarding_failed, name="onboarding-failed"),
    path("onboarding/admin-consent/", onboarding.admin_consent, name="onboarding-admin-consent"),
    path(
        "onboarding/admin-consent/callback/",
        onboarding.admin_consent_callback,
        name="onboarding-admin-consent-callback",
    ),
    path(
        "onboarding/admin-consent/done/", onboarding.admin_consent_done, name="onboarding-admin-consent-done"
    ),
    path("dashboard/", dashboard.overview, name="dashboard"),
    path("dashboard/signin/", dashboard.signin, name="dashboard-signin"),
    path("dashboard/signin/start/", dashboard.signin_start, name="dashboard-signin-start"),
    path("dashboard/signin/callback/", dashboard.signin_callback, name="dashboard-signin-callback"),
    path("dashboard/signin/failed/", dashboard.signin_failed, name="dashboard-signin-failed"),
    path("dashboard/signout/", dashboard.signout, name="dashboard-signout"),
    path("dashboard/activity/", dashboard.activity, name="dashboard-activity"),
    path("dashboard/activity/export.csv", dashboard.activity_export, name="dashboard-activity-export"),
    path("dashboard/contacts/", dashboard.contacts, name="dashboard-contacts"),
    path("dashboard/grants/<uuid:grant_id>/renew/", dashboard.grant_renew, name="dashboard-grant-renew"),
    path(
        "dashboard/grants/<uuid:grant_id>/revoke/",
        dashboard.grant_revoke_confirm,
        name="dashboard-grant-revoke",
    ),
]
