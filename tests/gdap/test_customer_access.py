"""Customer-tenant tokens and the GDAP inventory: refused before any request reaches Entra when the
inventory says no relationship lets the partner in (sandbox counters prove it), on the cache-hit
statement and the refresh path alike, through the broker and the service API; left to Entra when
the inventory was never read or the relationship may still let partner users in."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from gdap.inventory import gdap_inventory_refresh
from gdap.models import Inventory
from sandbox import demo
from tokens.issuance.broker import CustomerAccessRefused, CustomerRelationshipInactive, access_token_get
from tokens.models import AuditEvent, CachedAccessToken

pytestmark = pytest.mark.django_db


def _get(grant, actor, customer):
    return access_token_get(
        partner=grant.partner,
        audience="graph",
        purpose="customer sync",
        actor=actor,
        customer_tenant=customer,
    )


def _token_requests(sandbox) -> int:
    return int(sandbox.control.counters()["token_requests"]["total"])


@pytest.fixture
def inventory_read(consented_grant, panel_settings):
    assert gdap_inventory_refresh(partner_id=consented_grant.partner_id).outcome == "read"
    panel_settings.control.clear_counters()
    return consented_grant


def test_a_customer_whose_relationship_ended_is_refused_before_entra(
    inventory_read, panel_settings, service_actor
):
    with pytest.raises(CustomerRelationshipInactive) as refused:
        _get(inventory_read, service_actor, demo.PROSEWARE)
    message = refused.value.message
    assert "Proseware, Inc." in message and "'Proseware 2023' is expired since" in message
    assert demo.PROSEWARE in message and "as of the panel's read" in message
    assert _token_requests(panel_settings) == 0  # nothing reached Entra
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_DENIED)
    assert event.error_code == "gdap_relationship_inactive" and event.outcome == AuditEvent.Outcome.DENIED
    assert event.customer_tenant_id == uuid.UUID(demo.PROSEWARE) and "Proseware, Inc." in event.detail
    assert event.purpose == "customer sync" and event.partner_id == inventory_read.partner_id


@pytest.mark.parametrize(
    "customer, state",
    [
        (demo.FOURTH_COFFEE, "'Fourth Coffee support' is terminated since"),
        (demo.ALPINE_SKI, "'Alpine Ski House onboarding' is waiting for the customer's approval"),
        (demo.TAILSPIN, "has no GDAP relationship with the customer tenant"),  # Fabrikam's customer
    ],
)
def test_each_state_is_named(inventory_read, panel_settings, service_actor, customer, state):
    with pytest.raises(CustomerRelationshipInactive, match=state):
        _get(inventory_read, service_actor, customer)
    assert _token_requests(panel_settings) == 0


def test_a_relationship_terminated_mid_way_stops_the_cached_token_at_the_next_read(
    inventory_read, panel_settings, service_actor
):
    first = _get(inventory_read, service_actor, demo.ADATUM)
    assert _get(inventory_read, service_actor, demo.ADATUM).token == first.token  # served from the cache
    panel_settings.control.gdap_terminate(demo.GDAP_ADATUM)
    gdap_inventory_refresh(partner_id=inventory_read.partner_id)
    panel_settings.control.clear_counters()
    # The cached token is not served: the hit statement itself checks the inventory.
    with pytest.raises(CustomerRelationshipInactive, match="terminated"):
        _get(inventory_read, service_actor, demo.ADATUM)
    assert _token_requests(panel_settings) == 0


def test_a_relationship_that_expires_with_the_clock_is_refused_after_the_next_read(
    inventory_read, panel_settings, service_actor
):
    assert _get(inventory_read, service_actor, demo.NORTHWIND).token
    panel_settings.control.advance_clock(25 * 86400)
    CachedAccessToken.objects.all().delete()  # 25 days pass for the panel's cache too
    assert gdap_inventory_refresh(partner_id=inventory_read.partner_id).outcome == "read"
    panel_settings.control.clear_counters()
    with pytest.raises(CustomerRelationshipInactive, match="'Northwind support' is expired"):
        _get(inventory_read, service_actor, demo.NORTHWIND)
    assert _token_requests(panel_settings) == 0


def test_a_never_read_inventory_leaves_the_decision_to_entra(consented_grant, panel_settings, service_actor):
    panel_settings.control.clear_counters()
    with pytest.raises(CustomerAccessRefused):
        _get(consented_grant, service_actor, demo.PROSEWARE)
    assert _token_requests(panel_settings) == 1  # Entra (the sandbox) refused it: AADSTS90099
    assert _get(consented_grant, service_actor, demo.ADATUM).token


def test_a_failed_read_keeps_the_last_good_one_in_force(inventory_read, panel_settings, service_actor):
    panel_settings.control.add_fault("http_503", endpoint="resource", count=1)
    assert gdap_inventory_refresh(partner_id=inventory_read.partner_id).outcome == "transient"
    with pytest.raises(CustomerRelationshipInactive):
        _get(inventory_read, service_actor, demo.PROSEWARE)


def test_termination_requested_is_left_to_entra(inventory_read, panel_settings, service_actor):
    # Microsoft deprovisions from `terminating` on: the panel does not refuse earlier than Entra may.
    with pytest.raises(CustomerAccessRefused):
        _get(inventory_read, service_actor, demo.TREY_RESEARCH)
    assert _token_requests(panel_settings) == 1


def test_active_customers_still_get_tokens_and_the_partner_itself_is_untouched(
    inventory_read, panel_settings, service_actor
):
    assert _get(inventory_read, service_actor, demo.LITWARE).customer_tenant_id == demo.LITWARE
    assert _get(inventory_read, service_actor, None).customer_tenant_id is None


def test_a_refusal_asks_for_a_fresh_read_when_the_last_is_old(
    inventory_read, service_actor, django_capture_on_commit_callbacks
):
    Inventory.objects.filter(partner=inventory_read.partner).update(
        read_at=timezone.now() - timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(CustomerRelationshipInactive):
        _get(inventory_read, service_actor, demo.PROSEWARE)
    assert len(callbacks) == 1
    lease = Inventory.objects.get(partner=inventory_read.partner).enqueued_until
    assert lease is not None and lease > timezone.now()
    # A second refusal while that read is queued enqueues nothing more.
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(CustomerRelationshipInactive):
        _get(inventory_read, service_actor, demo.PROSEWARE)
    assert callbacks == []


def test_a_recent_read_is_not_asked_again(inventory_read, service_actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(CustomerRelationshipInactive):
        _get(inventory_read, service_actor, demo.PROSEWARE)
    assert callbacks == []


def test_the_service_api_answers_its_own_problem_type(inventory_read, panel_settings, api_call):
    response = api_call(
        {
            "partner_tenant_id": demo.CONTOSO,
            "audience": "graph",
            "purpose": "nightly customer sync",
            "customer_tenant_id": demo.PROSEWARE,
        }
    )
    assert response.status_code == 403 and response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://sam-controlpanel.invalid/problems/gdap-relationship-inactive"
    assert "Proseware, Inc." in problem["detail"] and "expired" in problem["detail"]
    assert _token_requests(panel_settings) == 0
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_DENIED)
    assert event.actor_id == "marketplace-orders" and event.error_code == "gdap_relationship_inactive"
