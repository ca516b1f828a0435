"""An audit trail that names customers: after the partner's inventory is read, a service obtains a
token for Northwind (active relationship) and is refused Proseware (expired) before Entra."""

from __future__ import annotations

import pytest

from partners.models import Partner
from sandbox import demo
from tokens.audit import Actor
from tokens.issuance.broker import CustomerRelationshipInactive, access_token_get


def customer_trail_make(*, partner: Partner, actor: Actor) -> None:
    access_token_get(
        partner=partner,
        audience="graph",
        purpose="mailbox audit",
        actor=actor,
        customer_tenant=demo.NORTHWIND,
    )
    with pytest.raises(CustomerRelationshipInactive):
        access_token_get(
            partner=partner,
            audience="graph",
            purpose="licence sync",
            actor=actor,
            customer_tenant=demo.PROSEWARE,
        )
