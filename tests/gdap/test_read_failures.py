"""A read of the relationships that fails changes nothing and says why: Graph's 403 without the
permission (a sandbox whose app registration lacks it), transient faults, and, from a server that
misbehaves as the sandbox never does, malformed pages, a nextLink to another host, a redirect, a
loop, and an empty list where relationships were known."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test.utils import override_settings

from gdap.inventory import Outcome, gdap_inventory_refresh
from gdap.models import Inventory, Relationship
from tests.fixtures.misbehaving_https import Answer, MisbehavingServer
from tokens.issuance.identity import msal_apps_clear

pytestmark = pytest.mark.django_db

LIST = "/v1.0/tenantRelationships/delegatedAdminRelationships"


def _snapshot() -> list[tuple]:
    return sorted(
        Relationship.objects.values_list("relationship_id", "status", "ends_at", "gone_at", "customer_name")
    )


@pytest.fixture
def known(consented_grant, panel_settings):
    """A partner whose relationships were read once, successfully."""
    assert gdap_inventory_refresh(partner_id=consented_grant.partner_id).outcome is Outcome.READ
    inventory = Inventory.objects.get(partner=consented_grant.partner)
    return consented_grant, _snapshot(), inventory.read_at


def _unchanged(known, code: str) -> Inventory:
    grant, before, read_at = known
    assert _snapshot() == before
    inventory = Inventory.objects.get(partner=grant.partner)
    assert inventory.read_at == read_at and inventory.error_code == code and inventory.error
    return inventory


@pytest.mark.parametrize(
    "kind, code, retry_after",
    [("http_503", "HTTP_503", None), ("http_429", "HTTP_429", 60), ("drop", "CONNECTION", None)],
)
def test_transient_graph_failures_change_nothing(known, panel_settings, kind, code, retry_after) -> None:
    panel_settings.control.add_fault(kind, endpoint="resource", count=1)
    result = gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert (
        result.outcome is Outcome.TRANSIENT
        and result.error_code == code
        and result.retry_after == retry_after
    )
    _unchanged(known, code)


def test_a_broker_refusal_changes_nothing(known, panel_settings) -> None:
    panel_settings.control.expire_refresh_tokens()
    from tokens.models import CachedAccessToken

    CachedAccessToken.objects.all().delete()
    result = gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "TOKEN_NEEDS_RENEWAL"
    assert "could not get a Graph token" in _unchanged(known, "TOKEN_NEEDS_RENEWAL").error


@pytest.fixture
def graph_elsewhere(
    known, panel_settings, misbehaving_https: MisbehavingServer, tmp_path
) -> Iterator[MisbehavingServer]:
    """Graph is the misbehaving server; tokens still come from the sandbox (both CAs trusted)."""
    bundle = tmp_path / "both.pem"
    bundle.write_text(panel_settings.ca_bundle.read_text() + misbehaving_https.ca_bundle.read_text())
    with override_settings(IDENTITY_CA_BUNDLE=str(bundle), GRAPH_BASE_URL=misbehaving_https.base_url):
        msal_apps_clear()
        yield misbehaving_https
    msal_apps_clear()


def _relationship(**changes: object) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "5d027261-d21f-4aa9-b7db-7fa1f56fb163-8777b240-c6f0-4469-9e98-a3205431b836",
        "displayName": "Contoso admin relationship",
        "duration": "P730D",
        "customer": {"tenantId": "52eaad04-13a2-4a2f-9ce8-93a294fadf36", "displayName": "Contoso Inc"},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": "dd4db9a0-cc4a-4213-9f9f-70242232d97e"}]},
        "status": "approvalPending",
        "autoExtendDuration": "P180D",
        "createdDateTime": "2022-02-10T11:24:42.3148266Z",
        "activatedDateTime": None,
        "endDateTime": None,
    }
    item.update(changes)
    return item


@pytest.mark.parametrize(
    "body, what",
    [
        ("<html>proxy error</html>", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"value": {"id": "x"}}), "no list of objects"),
        (json.dumps({"value": [_relationship(id=None)]}), "'id' is missing"),
        (json.dumps({"value": [_relationship(id="../../me")]}), "not an id"),
        (
            json.dumps({"value": [_relationship(customer={"tenantId": "not-a-guid"})]}),
            "tenantId is not a GUID",
        ),
        (json.dumps({"value": [_relationship(endDateTime="next tuesday")]}), "'endDateTime' is not a date"),
        (json.dumps({"value": [_relationship(endDateTime="2024-02-10T11:24:42")]}), "has no time zone"),
        (json.dumps({"value": [_relationship(accessDetails={"unifiedRoles": "all"})]}), "unifiedRoles"),
        (json.dumps({"value": [_relationship()], "@odata.nextLink": 42}), "nextLink is not a string"),
    ],
)
def test_a_malformed_page_changes_nothing(known, graph_elsewhere, body, what) -> None:
    graph_elsewhere.answers[LIST] = Answer(body=body)
    result = gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "MALFORMED" and what in result.error
    _unchanged(known, "MALFORMED")


def test_a_next_link_to_another_host_is_refused_unfollowed(known, panel_settings, graph_elsewhere) -> None:
    # The next page "lives" on the sandbox: another host (port) than the Graph the panel was given.
    foreign = f"{panel_settings.base_url}{LIST}?$skiptoken=abc"
    graph_elsewhere.answers[LIST] = Answer(
        body=json.dumps({"value": [_relationship()], "@odata.nextLink": foreign})
    )
    panel_settings.control.clear_counters()
    result = gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "FOREIGN_NEXT_LINK"
    assert "another host" in result.error and "not followed" in result.error
    assert graph_elsewhere.requested == [LIST]
    assert (
        panel_settings.control.counters()["requests_by_endpoint"].get("gdap", 0) == 0
    )  # the token went nowhere
    _unchanged(known, "FOREIGN_NEXT_LINK")


def test_a_next_link_to_another_resource_a_loop_and_a_redirect_are_refused(known, graph_elsewhere) -> None:
    base = graph_elsewhere.base_url
    cases = [
        (
            Answer(body=json.dumps({"value": [], "@odata.nextLink": f"{base}/v1.0/me/memberOf"})),
            "FOREIGN_NEXT_LINK",
        ),
        (Answer(body=json.dumps({"value": [], "@odata.nextLink": f"{base}{LIST}"})), "NEXT_LINK_LOOP"),
        (Answer(status=302, body=""), "GRAPH_REDIRECT"),
        (Answer(status=404, body='{"error": {"code": "NotFound"}}'), "GRAPH_404"),
    ]
    for answer, code in cases:
        graph_elsewhere.answers[LIST] = answer
        result = gdap_inventory_refresh(partner_id=known[0].partner_id)
        assert result.outcome is Outcome.FAILED and result.error_code == code, (code, result.error)
        _unchanged(known, code)


def test_an_empty_list_where_relationships_were_known_is_not_believed(known, graph_elsewhere) -> None:
    graph_elsewhere.answers[LIST] = Answer(body=json.dumps({"value": []}))
    result = gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "EMPTY_ANSWER"
    assert "Admin Agent" in result.error
    _unchanged(known, "EMPTY_ANSWER")


def test_a_good_read_after_a_failure_clears_the_error(known, panel_settings) -> None:
    panel_settings.control.add_fault("http_500", endpoint="resource", count=1)
    gdap_inventory_refresh(partner_id=known[0].partner_id)
    assert Inventory.objects.get(partner=known[0].partner).error_code == "HTTP_500"
    assert gdap_inventory_refresh(partner_id=known[0].partner_id).outcome is Outcome.READ
    inventory = Inventory.objects.get(partner=known[0].partner)
    assert inventory.error_code == "" and inventory.error == "" and inventory.read_at > known[2]


def test_no_token_reaches_the_logs_or_the_recorded_error(known, graph_elsewhere, caplog) -> None:
    from tokens.audit import Actor
    from tokens.issuance.broker import access_token_get

    grant = known[0]
    token = access_token_get(
        partner=grant.partner,
        audience="graph",
        purpose="test: the token a refresh will use",
        actor=Actor.system("t"),
    ).token
    graph_elsewhere.answers[LIST] = Answer(
        status=403, body='{"error": {"code": "Authorization_RequestDenied"}}'
    )
    with caplog.at_level(logging.DEBUG):
        result = gdap_inventory_refresh(partner_id=grant.partner_id)
    assert result.error_code == "GRAPH_403"
    inventory = Inventory.objects.get(partner=grant.partner)
    for text in (caplog.text, result.error, inventory.error, str(result)):
        assert token not in text and token[-40:] not in text
