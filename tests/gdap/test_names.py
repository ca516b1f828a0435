"""Customer names instead of GUIDs: on the partner's activity page and dashboard, in the admin's
audit trail and GDAP lists; each partner's names from its own inventory only; constant query counts."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gdap.inventory import gdap_inventory_refresh
from gdap.models import Inventory, Relationship
from gdap.names import customer_names_get
from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, member_make, partner_make
from tests.gdap.trail import customer_trail_make
from tokens.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(consented_grant, panel_settings, service_actor):
    """Contoso's inventory read, a token for Northwind and a refusal for Proseware on the trail."""
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    customer_trail_make(partner=consented_grant.partner, actor=service_actor)
    return consented_grant


def _alice(grant) -> Client:
    member = member_make(
        partner=grant.partner, upn=demo.ADMIN_AGENT, role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
    )
    return dashboard_login(Client(), member)


def test_names_come_from_the_partners_own_inventory(trail) -> None:
    names = customer_names_get(partner_id=trail.partner_id)
    assert names[demo.NORTHWIND] == "Northwind Traders" and names[demo.PROSEWARE] == "Proseware, Inc."
    assert customer_names_get(partner_id=trail.partner_id, tenant_ids=[demo.ADATUM, "junk"]) == {
        demo.ADATUM: "Adatum Corporation"
    }
    # Another partner with the same customer in its own inventory names it its own way, and sees
    # nothing of Contoso's.
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    now = timezone.now()
    Relationship.objects.create(
        partner=fabrikam, relationship_id="x-1", display_name="Fab", customer_tenant_id=demo.NORTHWIND,
        customer_name="Northwind (Fabrikam's name)", status="active", first_seen_at=now, last_seen_at=now,
    )  # fmt: skip
    assert customer_names_get(partner_id=fabrikam.pk) == {demo.NORTHWIND: "Northwind (Fabrikam's name)"}
    assert customer_names_get(partner_id=trail.partner_id)[demo.NORTHWIND] == "Northwind Traders"


def test_the_activity_page_names_customers(trail) -> None:
    page = _alice(trail).get("/dashboard/activity/").content.decode()
    assert "Northwind Traders" in page and "Proseware, Inc." in page
    assert f"customer {demo.NORTHWIND}" not in page and f"customer {demo.PROSEWARE}" not in page
    assert f'title="Customer tenant {demo.NORTHWIND}"' in page  # the id is still there for support


def test_a_customer_the_inventory_does_not_know_keeps_its_id(trail) -> None:
    Relationship.objects.all().delete()
    page = _alice(trail).get("/dashboard/activity/").content.decode()
    assert f"customer {demo.NORTHWIND}" in page


def test_the_dashboard_shows_relationships_ending_soon(trail) -> None:
    page = _alice(trail).get("/dashboard/").content.decode()
    assert "Customer relationships (GDAP)" in page
    assert "4 active relationships of 13 listed" in page
    assert "Northwind Traders" in page and "24 days" in page and "Litware, Inc." in page and "5 days" in page
    assert "Wide World Importers" not in page  # it extends itself


def test_the_dashboard_says_when_the_inventory_could_not_be_read(consented_grant) -> None:
    Inventory.objects.create(
        partner=consented_grant.partner, error_code="GRAPH_403", error="Graph refused: no permission."
    )
    page = _alice(consented_grant).get("/dashboard/").content.decode()
    assert "has not read your GDAP relationships yet: Graph refused: no permission." in page


def test_the_activity_page_query_count_does_not_grow_with_customers(trail) -> None:
    client = _alice(trail)
    client.get("/dashboard/activity/")
    with CaptureQueriesContext(connection) as one:
        assert client.get("/dashboard/activity/").status_code == 200
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_type="service",
            actor_id="orders",
            action="token_issued",
            partner=trail.partner,
            audience="graph",
            customer_tenant_id=uuid.uuid4(),
        )  # fmt: skip
        for _ in range(20)
    )
    with CaptureQueriesContext(connection) as many:
        assert client.get("/dashboard/activity/").status_code == 200
    assert len(many) == len(one)


def test_the_admin_audit_trail_names_customers(trail, staff_client) -> None:
    listing = staff_client.get("/admin/tokens/auditevent/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert f'<span title="Tenant {demo.NORTHWIND}">Northwind Traders</span>' in page
    assert f'<span title="Tenant {demo.PROSEWARE}">Proseware, Inc.</span>' in page
    refused = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_DENIED)
    detail = staff_client.get(f"/admin/tokens/auditevent/{refused.pk}/change/").content.decode()
    assert f"Proseware, Inc. ({demo.PROSEWARE})" in detail


def test_the_admin_lists_relationships_with_ends_in_and_a_filter(trail, staff_client) -> None:
    page = staff_client.get("/admin/gdap/relationship/").content.decode()
    assert "Northwind Traders" in page and "24 days" in page and "ended" in page
    soon = staff_client.get("/admin/gdap/relationship/?ends=7").content.decode()
    assert "Litware helpdesk" in soon and "Northwind support" not in soon
    month = staff_client.get("/admin/gdap/relationship/?ends=30").content.decode()
    assert "Northwind support" in month and "Wide World Importers managed" in month  # auto-extends, says so
    assert "(auto-extends)" in month
    detail = staff_client.get(
        f"/admin/gdap/relationship/{Relationship.objects.get(display_name=demo.GDAP_NORTHWIND).pk}/change/"
    ).content.decode()
    assert "Helpdesk Administrator, Exchange Administrator, License Administrator" in detail
    assert "securityGroup" in detail
    assert staff_client.get("/admin/gdap/inventory/").status_code == 200


def test_staff_refresh_now_enqueues_one_read_per_partner(
    trail, staff_client, django_capture_on_commit_callbacks
) -> None:
    ids = list(Relationship.objects.values_list("pk", flat=True)[:3])
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(
            "/admin/gdap/relationship/", {"action": "refresh_now", "_selected_action": ids}, follow=True
        )
    assert response.status_code == 200 and "is queued" in response.content.decode()
    assert len(callbacks) == 1
    # Asked again (from the inventories) while queued: nothing more is enqueued.
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(
            "/admin/gdap/inventory/",
            {"action": "refresh_now", "_selected_action": [str(trail.partner_id)]},
            follow=True,
        )
    assert "1 already had one queued" in response.content.decode()
    assert callbacks == []


def test_partners_see_no_relationship_admin(trail, client) -> None:
    assert client.get("/admin/gdap/relationship/").status_code == 302  # to the staff sign-in
