"""Notification contacts on the dashboard (admin agents edit, validated, audited, scoped to the
partner) and the machine-readable renewal health endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, member_make, partner_make
from tokens.models import AuditEvent, NotificationContact
from tokens.renewal.contacts import MAX_CONTACTS
from tokens.renewal.liveness import sweep_heartbeat_record

pytestmark = pytest.mark.django_db
URL = "/dashboard/contacts/"


@pytest.fixture
def people():
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    return {
        "alice": member_make(
            partner=contoso, upn="alice@contoso", role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
        ),
        "bob": member_make(
            partner=contoso, upn="bob@contoso", role=AgentRole.SALES_AGENT, object_id=demo.ADATUM
        ),
        "charlie": member_make(
            partner=fabrikam, upn="charlie@fabrikam", role=AgentRole.ADMIN_AGENT, object_id=demo.FABRIKAM
        ),
    }


def test_an_admin_agent_adds_and_removes_contacts_audited(people) -> None:
    alice = dashboard_login(Client(), people["alice"])
    assert alice.post(URL, {"email": "NOC@Contoso.EXAMPLE"}).status_code == 302
    contact = NotificationContact.objects.get()
    assert contact.email == "NOC@contoso.example" and contact.added_by == "alice@contoso"
    assert "NOC@contoso.example" in alice.get(URL).content.decode()
    assert alice.post(URL, {"remove": str(contact.pk)}).status_code == 302
    assert not NotificationContact.objects.exists()
    events = AuditEvent.objects.filter(partner=people["alice"].partner).order_by("id")
    assert [(e.action, e.actor_id, e.detail) for e in events] == [
        ("contact_added", "alice@contoso", "NOC@contoso.example"),
        ("contact_removed", "alice@contoso", "NOC@contoso.example"),
    ]


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("", "Enter an e-mail address"),
        ("not-an-address", "valid e-mail"),
        ("a@b", "valid e-mail"),
        ("x" * 250 + "@e.com", "longer than 254"),
        ("evil@example.com\r\nBcc: victim@example.com", "valid e-mail"),
    ],
)
def test_bad_addresses_are_refused_and_change_nothing(people, email: str, error: str) -> None:
    response = dashboard_login(Client(), people["alice"]).post(URL, {"email": email})
    assert response.status_code == 400 and error in response.content.decode()
    assert not NotificationContact.objects.exists() and not AuditEvent.objects.exists()


def test_duplicates_the_limit_and_foreign_ids_are_refused(people) -> None:
    alice = dashboard_login(Client(), people["alice"])
    alice.post(URL, {"email": "noc@contoso.example"})
    duplicate = alice.post(URL, {"email": "noc@CONTOSO.example"})
    assert duplicate.status_code == 400 and "already a contact" in duplicate.content.decode()
    charlie = dashboard_login(Client(), people["charlie"])
    own = NotificationContact.objects.get()
    for value in (str(own.pk), "nonsense"):
        refused = charlie.post(URL, {"remove": value})
        assert refused.status_code == 400 and "No such contact" in refused.content.decode()
    assert "noc@contoso.example" not in charlie.get(URL).content.decode()
    for n in range(MAX_CONTACTS - 1):
        assert alice.post(URL, {"email": f"c{n}@contoso.example"}).status_code == 302
    full = alice.post(URL, {"email": "one-more@contoso.example"})
    assert full.status_code == 400 and f"At most {MAX_CONTACTS}" in full.content.decode()


def test_a_sales_agent_sees_the_list_but_cannot_change_it_and_anonymous_signs_in(people) -> None:
    bob = dashboard_login(Client(), people["bob"])
    page = bob.get(URL)
    assert page.status_code == 200 and "Only admin agents can change this list" in page.content.decode()
    assert bob.post(URL, {"email": "x@contoso.example"}).status_code == 403
    assert not NotificationContact.objects.exists()
    anonymous = Client()
    assert anonymous.get(URL).headers["Location"] == "/dashboard/signin/"
    assert anonymous.post(URL, {"email": "x@contoso.example"}).status_code == 302
    assert not NotificationContact.objects.exists()


def test_the_renewal_health_endpoint_reports_stale_when_beat_stops(client, settings) -> None:
    settings.RENEWAL_SWEEP_MINUTES = 5
    never = client.get("/healthz/renewal")
    assert never.status_code == 503 and never.json() == {
        "status": "stale", "last_sweep_at": None, "stale_after_seconds": 600
    }  # fmt: skip
    sweep_heartbeat_record(now=timezone.now() - timedelta(minutes=9))
    fresh = client.get("/healthz/renewal")
    assert fresh.status_code == 200 and fresh.json()["status"] == "ok"
    sweep_heartbeat_record(now=timezone.now() - timedelta(minutes=11))
    stale = client.get("/healthz/renewal")
    assert stale.status_code == 503 and stale.json()["status"] == "stale"
    assert client.post("/healthz/renewal").status_code == 405
