"""Customer names and the GDAP section, for templates: `{% load gdap %}`.

* `{{ tenant_id|customer_name:partner }}`: the customer's name from that partner's inventory, or
  the tenant id itself when the inventory does not know it. The partner's names are read once per
  partner object (one query per page, however many rows).
* `{% include "gdap/customer.html" with tenant_id=... partner=... %}`: the name with the tenant id
  beside it, muted, for pages that show customer tenants.
* `{% gdap_partner_section partner %}`: the dashboard's small section on the partner's relationships
  (the inventory's last read, those ending soon).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import template

from gdap.names import customer_names_get
from gdap.overview import gdap_partner_summary
from partners.models import Partner

register = template.Library()

_MEMO = "_gdap_customer_names"


@register.filter
def customer_name(tenant_id: uuid.UUID | str | None, partner: Partner | None) -> str:
    if not tenant_id:
        return ""
    if partner is None:
        return str(tenant_id)
    names: dict[str, str] | None = getattr(partner, _MEMO, None)
    if names is None:
        names = customer_names_get(partner_id=partner.pk)
        setattr(partner, _MEMO, names)
    return names.get(str(tenant_id).lower(), str(tenant_id))


@register.inclusion_tag("gdap/partner_section.html")
def gdap_partner_section(partner: Partner) -> dict[str, Any]:
    return {"summary": gdap_partner_summary(partner=partner)}
