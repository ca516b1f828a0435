"""What staff type into an admin search box: a partner's name (its beginning, any case), its tenant
id, or an exact id. Each form is answered through an index; nothing is a substring scan of a table
(bench/scale.py prints the plans at 100,000 partners and 10 million audit events)."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from partners.models import Partner

# A name prefix matching more partners than this is cut there: staff then type more of the name.
NAME_MATCHES_MAX = 50


def search_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def partners_search(*, term: str) -> QuerySet[Partner]:
    """Partners whose tenant id or id is the term, or whose name starts with it (case-insensitive,
    through the index on UPPER(display_name)); at most NAME_MATCHES_MAX."""
    term = term.strip()
    as_uuid = search_uuid(term)
    if as_uuid is not None:
        return Partner.objects.filter(Q(tenant_id=as_uuid) | Q(id=as_uuid))
    ids = Partner.objects.filter(display_name__istartswith=term).order_by().values_list("id", flat=True)
    return Partner.objects.filter(id__in=list(ids[:NAME_MATCHES_MAX]))
