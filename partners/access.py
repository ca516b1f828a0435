"""The one door to partner data: every dashboard view gets its partner (and grant) from here.

As Healthchecks' `_get_check_for_user`: the signed-in user's partner scopes every lookup, an object
of another partner is a 404 (its existence is not revealed), and a change by a read-only member
(a sales agent) is a 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from partners.models import Partner, PartnerUser
from tokens.models import ConsentGrant

SESSION_KEY = "partner_user_id"


class SignInRequired(Exception):
    """No partner user is signed in in this session."""


@dataclass(frozen=True)
class PartnerAccess:
    partner: Partner
    member: PartnerUser
    grant: ConsentGrant | None = None


def partner_access_get(
    request: HttpRequest, *, write: bool, grant_id: uuid.UUID | None = None
) -> PartnerAccess:
    """The signed-in user's partner and membership, and the named grant of that partner.
    Raises SignInRequired, Http404 (no such grant for this partner) or PermissionDenied."""
    member_id = request.session.get(SESSION_KEY)
    member = PartnerUser.objects.select_related("partner").filter(pk=member_id).first() if member_id else None
    if member is None:
        raise SignInRequired
    grant = None
    if grant_id is not None:
        grant = (
            ConsentGrant.objects.select_related("application")
            .filter(partner=member.partner, pk=grant_id)
            .first()
        )
        if grant is None:
            raise Http404("No such grant.")
    if write and not member.may_change_grants:
        raise PermissionDenied("Only admin agents can renew or revoke grants.")
    return PartnerAccess(member.partner, member, grant)
