"""May the broker ask Entra for a token in this customer tenant? What the GDAP inventory says.

The broker (tokens.issuance.broker) asks before it goes to Entra, on both of its paths: the cache hit's one
statement carries `CUSTOMER_RELATIONSHIP_SQL`, and the multi-statement path calls
`customer_relationship_refusal`, which also writes the message the caller and the audit trail get.

* The partner's inventory was never read (a new partner, or reads keep failing, for instance because
  its consent lacks DelegatedAdminRelationship.Read.All): the request goes on and Entra decides, as
  before the inventory existed. The inventory is a help, not the access control: Entra enforces GDAP
  whatever the panel believes, and refusing on no knowledge would stop every customer call of a
  partner whose relationships cannot be read.
* It was read: the request goes on only if a relationship with that customer, still listed at the
  last read, is in a status that can let partner users in (ALLOWING_STATUSES). Otherwise it is
  refused before any request reaches Entra, with a message naming the relationship and its state.

A refusal also asks for a fresh read of the partner's relationships when the last one is older than
GDAP_REFUSAL_REFRESH_MINUTES: a relationship the partner has just renewed is then seen within
minutes, not at the next scheduled read.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gdap.models import Inventory, Relationship
from partners.models import Partner

Status = Relationship.Status
# `active` lets the relationship's groups in. `terminationRequested` still does until Microsoft starts
# deprovisioning (`terminating`): refusing it here would refuse what Entra may still allow. A status
# the panel does not know is left to Entra too.
ALLOWING_STATUSES = (Status.ACTIVE, Status.TERMINATION_REQUESTED, Status.UNKNOWN)

# The same rule in SQL, for the broker's one-statement cache hit (tokens.issuance.broker._ISSUE_SQL): the
# grant's partner (`g.partner_id`) never had its inventory read, or one of its listed relationships
# with the customer (`%(customer)s`) allows access.
CUSTOMER_RELATIONSHIP_SQL = """
      AND (NOT EXISTS (SELECT 1 FROM gdap_inventory i WHERE i.partner_id = g.partner_id AND i.read_at IS NOT NULL)
           OR EXISTS (SELECT 1 FROM gdap_relationship r
                      WHERE r.partner_id = g.partner_id AND r.customer_tenant_id = %(customer)s::uuid
                        AND r.gone_at IS NULL AND r.status IN ({allowing})))""".format(  # noqa: S608 - our own constants
    allowing=", ".join(f"'{status.value}'" for status in ALLOWING_STATUSES)
)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "an unknown date"


def customer_relationship_refusal(*, partner: Partner, customer: str) -> str | None:
    """None when a token for `customer` (a tenant id, lower case) may be asked of Entra; otherwise
    the reason, naming the customer and the state of its most recent relationship."""
    try:
        tenant_id = uuid.UUID(customer)
    except ValueError:  # not a tenant id at all: the broker's own checks answer that
        return None
    read_at = Inventory.objects.filter(partner_id=partner.pk).values_list("read_at", flat=True).first()
    if read_at is None:
        return None
    relationships = list(
        Relationship.objects.filter(partner_id=partner.pk, customer_tenant_id=tenant_id, gone_at=None)
    )
    if any(r.status in ALLOWING_STATUSES for r in relationships):
        return None
    as_of = f"as of the panel's read of {partner.display_name}'s relationships at {_when(read_at)}"
    if not relationships:
        return (
            f"{partner.display_name} has no GDAP relationship with the customer tenant {customer} ({as_of}). "
            "A relationship must be created in Partner Center and approved by the customer."
        )
    latest = max(relationships, key=lambda r: r.activated_at or r.requested_at or r.first_seen_at)
    customer_name = latest.customer_name or customer
    state = latest.get_status_display().lower()
    if latest.status in (Status.EXPIRED, Status.TERMINATED) and latest.ends_at is not None:
        state += f" since {_when(latest.ends_at)}"
    return (
        f"{partner.display_name} has no active GDAP relationship with {customer_name} ({customer}): "
        f"its relationship '{latest.display_name}' is {state} ({as_of}). "
        "A new relationship must be approved by the customer before the panel asks for tokens there."
    )


def inventory_refresh_soon(*, partner_id: uuid.UUID) -> bool:
    """Enqueue a read of the partner's relationships, unless the last one is recent or one is already
    queued (a conditional UPDATE: of many refused requests at once, one enqueues). True if enqueued."""
    from gdap.tasks import gdap_inventory_refresh_task  # the tasks module imports the services

    now = timezone.now()
    recent = now - timedelta(minutes=settings.GDAP_REFUSAL_REFRESH_MINUTES)
    with transaction.atomic():
        claimed = (
            Inventory.objects.filter(partner_id=partner_id, read_at__lte=recent)
            .filter(Q(enqueued_until__isnull=True) | Q(enqueued_until__lte=now))
            .update(enqueued_until=now + timedelta(seconds=settings.GDAP_LEASE_SECONDS))
        )
        if claimed:
            transaction.on_commit(partial(gdap_inventory_refresh_task.delay, str(partner_id)))
    return bool(claimed)
