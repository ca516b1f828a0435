"""An app registration without DelegatedAdminRelationship.Read.All: Graph answers 403 (the sandbox
does as Microsoft documents), the inventory records why and changes nothing, and customer tokens are
left to Entra as if the inventory did not exist."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gdap.inventory import Outcome, gdap_inventory_refresh
from gdap.models import Inventory, Relationship
from sandbox import demo
from sandbox.control_client import start_sandbox
from sandbox.directory import DEMO_DIRECTORY
from tests.fixtures.sandbox import RunningSandbox
from tokens.issuance.broker import access_token_get

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sandbox_without_gdap_permission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    folder = tmp_path_factory.mktemp("no-gdap-permission")
    text = DEMO_DIRECTORY.read_text(encoding="utf-8")
    assert '    "DelegatedAdminRelationship.Read.All",\n' in text
    text = text.replace('    "DelegatedAdminRelationship.Read.All",\n', "").replace(
        'path = "demo/', f'path = "{DEMO_DIRECTORY.parent}/demo/'
    )
    directory = folder / "directory.toml"
    directory.write_text(text, encoding="utf-8")
    with start_sandbox(state_dir=folder / "state", directory=directory) as control:
        yield RunningSandbox(control)


@pytest.fixture
def sandbox(sandbox_without_gdap_permission: RunningSandbox) -> RunningSandbox:
    """This module's sandbox, in place of the demo one, for every fixture built on `sandbox`."""
    sandbox_without_gdap_permission.control.reset()
    return sandbox_without_gdap_permission


def test_graph_403_is_recorded_and_changes_nothing(consented_grant, panel_settings, service_actor) -> None:
    result = gdap_inventory_refresh(partner_id=consented_grant.partner_id)
    assert result.outcome is Outcome.FAILED and result.error_code == "GRAPH_403"
    assert (
        "Authorization_RequestDenied" in result.error
        and "DelegatedAdminRelationship.Read.All" in result.error
    )
    assert "admin consent" in result.error
    assert panel_settings.control.counters()["requests_by_endpoint"]["gdap"] == 1  # refused at the first page
    inventory = Inventory.objects.get(partner=consented_grant.partner)
    assert inventory.read_at is None and inventory.error_code == "GRAPH_403"
    assert not Relationship.objects.exists()
    # Never read: customer tenants are Entra's to refuse or allow, as before the inventory existed.
    token = access_token_get(
        partner=consented_grant.partner,
        audience="graph",
        purpose="customer sync",
        actor=service_actor,
        customer_tenant=demo.ADATUM,
    )
    assert token.customer_tenant_id == demo.ADATUM
