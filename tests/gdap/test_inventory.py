"""The GDAP inventory read from the sandbox's Graph over TLS: every page, stored whole, idempotent,
changes picked up on the next read (a relationship terminated mid-way, one deleted)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gdap.inventory import PURPOSE, Outcome, gdap_inventory_refresh
from gdap.models import Inventory, Relationship
from sandbox import demo
from tokens.models import AuditEvent

pytestmark = pytest.mark.django_db

ACTIVE_OR_TERMINATION_REQUESTED = 5  # the relationships whose access assignments are read


def _rows(partner) -> dict[str, Relationship]:
    return {r.display_name: r for r in Relationship.objects.filter(partner=partner)}


def test_the_inventory_reads_every_page(consented_grant, panel_settings) -> None:
    panel_settings.control.clear_counters()
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert result.outcome is Outcome.READ and result.relationships == demo.GDAP_CONTOSO_COUNT
    # Three pages of relationships (five a page in the demo), then one access-assignment list per
    # relationship that can have live assignments.
    assert (
        panel_settings.control.counters()["requests_by_endpoint"]["gdap"]
        == 3 + ACTIVE_OR_TERMINATION_REQUESTED
    )
    rows = _rows(consented_grant.partner)
    assert len(rows) == demo.GDAP_CONTOSO_COUNT and "Tailspin managed" not in rows  # Fabrikam's
    assert {r.status for r in rows.values()} == set(Relationship.Status.values) - {"unknownFutureValue"}
    northwind = rows[demo.GDAP_NORTHWIND]
    assert (
        str(northwind.customer_tenant_id) == demo.NORTHWIND and northwind.customer_name == "Northwind Traders"
    )
    assert northwind.status == "active" and northwind.duration == "P730D" and not northwind.auto_extends
    assert northwind.roles[0] == "729827e3-9c14-49f7-bb1b-9608f156bbb8"
    assert northwind.ends_at is not None
    assert abs(northwind.ends_at - (timezone.now() + timedelta(days=24))) < timedelta(minutes=5)
    assert northwind.activated_at is not None and northwind.requested_at is not None
    [assignment] = northwind.access_assignments
    assert assignment["type"] == "securityGroup" and assignment["status"] == "active"
    assert assignment["roles"] == northwind.roles
    assert rows[demo.GDAP_ADATUM].auto_extends and rows[demo.GDAP_ADATUM].auto_extend_duration == "P180D"
    pending = rows["Alpine Ski House onboarding"]
    assert pending.activated_at is None and pending.ends_at is None and pending.access_assignments == []
    inventory = Inventory.objects.get(partner=consented_grant.partner)
    assert inventory.read_at is not None and inventory.error_code == "" and inventory.error == ""
    # The Graph token was asked of the broker with its purpose, and audited.
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.TOKEN_ISSUED,
        audience="graph",
        purpose=PURPOSE,
        partner=consented_grant.partner,
    ).exists()


def test_a_second_read_changes_nothing(consented_grant, panel_settings) -> None:
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    first = {
        r.relationship_id: (r.pk, r.first_seen_at, r.status, r.ends_at) for r in Relationship.objects.all()
    }
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert result.outcome is Outcome.READ and result.changed == [] and result.gone == 0
    again = {
        r.relationship_id: (r.pk, r.first_seen_at, r.status, r.ends_at) for r in Relationship.objects.all()
    }
    assert again == first


def test_a_relationship_terminated_mid_way_is_picked_up_on_the_next_read(
    consented_grant, panel_settings
) -> None:
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert _rows(consented_grant.partner)[demo.GDAP_ADATUM].status == "active"
    panel_settings.control.gdap_terminate(demo.GDAP_ADATUM)
    panel_settings.control.gdap_expire(demo.GDAP_LITWARE)
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert sorted(result.changed) == [
        f"{demo.GDAP_ADATUM}: active -> terminated",
        f"{demo.GDAP_LITWARE}: active -> expired",
    ]
    rows = _rows(consented_grant.partner)
    assert rows[demo.GDAP_ADATUM].status == "terminated"
    ended = rows[demo.GDAP_ADATUM].ends_at
    assert ended is not None and ended <= timezone.now()
    # An ended relationship has deleted assignments only: they are not read, and none is kept.
    assert rows[demo.GDAP_ADATUM].access_assignments == []


def test_a_relationship_no_longer_listed_is_marked_gone_and_comes_back_if_listed_again(
    consented_grant, panel_settings
) -> None:
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    panel_settings.control.gdap_delete("Lamna Healthcare draft")
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert result.gone == 1
    gone = Relationship.objects.get(display_name="Lamna Healthcare draft")
    assert gone.gone_at is not None and gone.status == "created"  # as last seen
    panel_settings.control.reset()  # the directory's relationships are back
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert Relationship.objects.get(display_name="Lamna Healthcare draft").gone_at is None


def test_an_unknown_status_is_stored_as_unknown(consented_grant, panel_settings, monkeypatch) -> None:
    import gdap.inventory

    real = gdap.inventory.relationships_read

    def with_a_new_status(*, access_token: str):
        found = real(access_token=access_token)
        from dataclasses import replace

        return [replace(found[0], status="suspendedByMicrosoft"), *found[1:]]

    monkeypatch.setattr(gdap.inventory, "relationships_read", with_a_new_status)
    gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert Relationship.objects.filter(status=Relationship.Status.UNKNOWN).count() == 1


def test_partners_that_cannot_be_read_are_recorded_not_read(consented_grant, panel_settings) -> None:
    from tokens.models import ConsentGrant

    ConsentGrant.objects.filter(pk=consented_grant.pk).update(consented_by_role="sales_agent")
    panel_settings.control.clear_counters()
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "NO_GRANT"
    assert "Admin Agents" in result.error
    assert panel_settings.control.counters()["requests_by_endpoint"].get("gdap", 0) == 0
    assert Inventory.objects.get(partner=consented_grant.partner).error_code == "NO_GRANT"
    assert (
        gdap_inventory_refresh(partner_id="00000000-0000-0000-0000-000000000000").outcome is Outcome.MISSING
    )
