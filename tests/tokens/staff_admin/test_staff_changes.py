"""Every staff change is audited with the staff user and what changed; the kill switch and a
partner's suspension ask for a reason on a confirmation page, and change nothing until given one."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from partners.models import Partner
from sandbox import demo
from tests.fixtures.staff import partner_make
from tokens.credentials.applications import credential_secret_add
from tokens.models import Application, ApplicationCredential, AuditEvent, KillSwitch, ServiceClient

pytestmark = pytest.mark.django_db

KEY = re.compile(r"samcp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def _staff_events(user: User, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(actor_type="staff", actor_id=str(user.pk), action=action))


def test_the_application_kill_switch_asks_for_a_reason_first(
    staff_client: Client, staff_user: User, app_row: Application
) -> None:
    selection = {"action": "kill_switch_engage", "_selected_action": [str(app_row.pk)]}
    confirm = staff_client.post("/admin/tokens/application/", selection)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Reason (recorded in the audit trail)" in page and "Reports" in page
    # Confirmed without a reason: the page again, with the error, and nothing changed.
    blank = staff_client.post("/admin/tokens/application/", selection | {"confirmed": "1", "reason": "  "})
    assert blank.status_code == 200 and "A reason is required" in blank.content.decode()
    assert not KillSwitch.objects.filter(application=app_row, engaged=True).exists()
    assert not AuditEvent.objects.exists()
    done = staff_client.post(
        "/admin/tokens/application/", selection | {"confirmed": "1", "reason": "credential leaked, ticket 42"}
    )
    assert done.status_code == 302
    assert KillSwitch.objects.get(application=app_row).reason == "credential leaked, ticket 42"
    (event,) = _staff_events(staff_user, "kill_switch_engaged")
    assert event.detail == "credential leaked, ticket 42" and event.application_id == app_row.pk


def test_the_global_kill_switch_on_the_health_page_asks_for_a_reason_first(
    staff_client: Client, staff_user: User
) -> None:
    confirm = staff_client.post("/admin/health/", {"kill_switch": "engage"})
    assert confirm.status_code == 200 and 'name="reason"' in confirm.content.decode()
    assert not KillSwitch.objects.filter(engaged=True).exists()
    staff_client.post("/admin/health/", {"kill_switch": "engage", "confirmed": "1", "reason": "incident 7"})
    assert KillSwitch.objects.get(application=None).engaged
    assert [event.detail for event in _staff_events(staff_user, "kill_switch_engaged")] == ["incident 7"]


def test_suspending_a_partner_asks_for_a_reason_first(staff_client: Client, staff_user: User) -> None:
    partner = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    selection = {"action": "suspend", "_selected_action": [str(partner.pk)]}
    confirm = staff_client.post("/admin/partners/partner/", selection)
    assert confirm.status_code == 200 and "Contoso" in confirm.content.decode()
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.ACTIVE
    staff_client.post(
        "/admin/partners/partner/", selection | {"confirmed": "1", "reason": "chargeback fraud"}
    )
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.SUSPENDED
    (event,) = _staff_events(staff_user, "partner_suspended")
    assert event.detail == "chargeback fraud" and event.partner_id == partner.pk


def test_a_service_client_is_audited_when_created_changed_disabled_and_enabled(
    staff_client: Client, staff_user: User
) -> None:
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    created = staff_client.post(
        "/admin/tokens/serviceclient/add/",
        {"name": "orders", "audiences": ["graph"], "cidrs": "", "rate_limit_per_minute": "600"},
    )
    shown = KEY.search(created.content.decode())
    assert shown is not None
    key = shown.group(0)
    client = ServiceClient.objects.get()
    (event,) = _staff_events(staff_user, "service_client_created")
    assert "orders" in event.detail and "audiences: [graph]" in event.detail
    changed = staff_client.post(
        f"/admin/tokens/serviceclient/{client.pk}/change/",
        {
            "name": "orders",
            "audiences": ["graph", "arm"],
            "partners": [str(contoso.pk)],
            "cidrs": "10.0.0.0/8",
            "rate_limit_per_minute": "60",
        },
    )
    assert changed.status_code == 302, changed.content
    (event,) = _staff_events(staff_user, "service_client_changed")
    for part in (
        "audiences: [graph] → [graph, arm]",
        "partners: [] → [Contoso (",
        "cidrs: [] → [10.0.0.0/8]",
        "rate_limit_per_minute: 600 → 60",
    ):
        assert part in event.detail, event.detail
    assert "name" not in event.detail.split(":", 1)[1]  # unchanged fields are not listed
    for action in ("disable", "enable"):
        staff_client.post("/admin/tokens/serviceclient/", {"action": action, "_selected_action": [client.pk]})
    assert len(_staff_events(staff_user, "service_client_disabled")) == 1
    assert len(_staff_events(staff_user, "service_client_enabled")) == 1
    # Saving without a change writes nothing; deleting is not offered (disable instead).
    staff_client.post(
        f"/admin/tokens/serviceclient/{client.pk}/change/",
        {"name": "orders", "audiences": ["graph", "arm"], "partners": [str(contoso.pk)],
         "cidrs": "10.0.0.0/8\n", "rate_limit_per_minute": "60"},
    )  # fmt: skip
    assert len(_staff_events(staff_user, "service_client_changed")) == 1, [
        e.detail for e in _staff_events(staff_user, "service_client_changed")
    ]
    assert staff_client.post(f"/admin/tokens/serviceclient/{client.pk}/delete/").status_code == 403
    details = " ".join(AuditEvent.objects.values_list("detail", flat=True))
    assert key not in details and client.key_digest not in details


def test_application_and_credential_changes_are_audited(
    staff_client: Client, staff_user: User, app_row: Application
) -> None:
    response = staff_client.post(
        f"/admin/tokens/application/{app_row.pk}/change/",
        {
            "name": "Reports",
            "client_id": "reports-client",
            "authority_host": "https://login.example",
            "authority_tenant": "organizations",
            "redirect_uri": "https://reports.example/callback",
            "audiences": '{"graph": ["https://graph.microsoft.com/.default"]}',
            "consent_audience": "partner_center",
            "policy_days": "30",
        },
    )
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response.content
    )
    (event,) = _staff_events(staff_user, "application_changed")
    assert event.application_id == app_row.pk and "policy_days: 90 → 30" in event.detail
    credential = credential_secret_add(application=app_row, secret="canary-staff-change-secret-55aa")
    disabled_at = timezone.now().replace(microsecond=0) + timedelta(minutes=1)
    response = staff_client.post(
        f"/admin/tokens/applicationcredential/{credential.pk}/change/",
        {
            "disabled_at_0": disabled_at.strftime("%Y-%m-%d"),
            "disabled_at_1": disabled_at.strftime("%H:%M:%S"),
            "certificate_pem": "",
        },
    )
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response.content
    )
    assert ApplicationCredential.objects.get(pk=credential.pk).disabled_at is not None
    (event,) = _staff_events(staff_user, "credential_changed")
    assert event.application_id == app_row.pk and "disabled_at: — → " in event.detail
    assert "canary-staff-change-secret-55aa" not in event.detail
    assert staff_client.post(f"/admin/tokens/application/{app_row.pk}/delete/").status_code == 403


def test_the_commands_that_change_clients_and_credentials_are_audited(settings) -> None:
    call_command(
        "create_service_client",
        "--name",
        "billing",
        "--audience",
        "graph",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    (event,) = AuditEvent.objects.filter(action="service_client_created")
    assert (event.actor_type, event.actor_id) == ("system", "manage.py create_service_client")
    assert "billing" in event.detail and "graph" in event.detail
    settings.SAM_APP_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
    settings.SAM_APP_CLIENT_SECRET = "canary-synced-secret-7c3e"
    for _ in range(2):  # the second run stores nothing new, and records nothing
        call_command("sync_application", stdout=StringIO())
    (event,) = AuditEvent.objects.filter(action="credential_added")
    assert event.application is not None and event.application.client_id == settings.SAM_APP_CLIENT_ID
    assert "canary-synced-secret-7c3e" not in event.detail
