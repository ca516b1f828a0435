"""Customer names for the pages that would otherwise show tenant GUIDs (the dashboard, the activity
page, the admin): from the partner's GDAP inventory, never across partners (a partner must not learn
through the panel what another partner calls a tenant, nor that it is someone else's customer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import F

from gdap.models import Relationship


def customer_names_get(
    *, partner_id: uuid.UUID | str, tenant_ids: Iterable[uuid.UUID | str] | None = None
) -> dict[str, str]:
    """{customer tenant id (lower case): display name} for the partner's customers, all of them or
    those in `tenant_ids`. One query. A name comes from the customer's most recent relationship
    (relationships no longer listed included: their customer keeps its name)."""
    relationships = Relationship.objects.filter(
        partner_id=partner_id, customer_tenant_id__isnull=False
    ).exclude(customer_name="")
    if tenant_ids is not None:
        wanted = {uuid.UUID(str(t)) for t in tenant_ids if _is_uuid(t)}
        if not wanted:
            return {}
        relationships = relationships.filter(customer_tenant_id__in=wanted)
    names: dict[str, str] = {}
    rows = relationships.order_by(F("activated_at").desc(nulls_last=True), "-first_seen_at").values_list(
        "customer_tenant_id", "customer_name"
    )
    for tenant_id, name in rows:
        names.setdefault(str(tenant_id), name)
    return names


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def customer_names_attach(*, events: Iterable[Any]) -> None:
    """Set `customer_name` on each row of a page that names a partner and a customer tenant (audit
    events): one query for the whole page, each name from that row's own partner's inventory."""
    rows = [e for e in events if getattr(e, "partner_id", None) and getattr(e, "customer_tenant_id", None)]
    for row in events:
        row.customer_name = ""
    if not rows:
        return
    pairs = {(str(r.partner_id), str(r.customer_tenant_id)) for r in rows}
    found = (
        Relationship.objects.filter(
            partner_id__in={p for p, _ in pairs}, customer_tenant_id__in={uuid.UUID(c) for _, c in pairs}
        )
        .exclude(customer_name="")
        .order_by(F("activated_at").desc(nulls_last=True), "-first_seen_at")
        .values_list("partner_id", "customer_tenant_id", "customer_name")
    )
    names: dict[tuple[str, str], str] = {}
    for partner_id, tenant_id, name in found:
        names.setdefault((str(partner_id), str(tenant_id)), name)
    for row in rows:
        row.customer_name = names.get((str(row.partner_id), str(row.customer_tenant_id)), "")


def customer_label(*, partner_id: uuid.UUID | str | None, tenant_id: uuid.UUID | str | None) -> str:
    """ "Name (tenant id)" where the partner's inventory knows the customer, else the tenant id."""
    if not tenant_id:
        return ""
    name = (
        customer_names_get(partner_id=partner_id, tenant_ids=[tenant_id]).get(str(tenant_id).lower())
        if partner_id
        else None
    )
    return f"{name} ({tenant_id})" if name else str(tenant_id)
