"""Staff operations on grants that the admin offers as actions."""

from __future__ import annotations

from django.db import transaction

from tokens.audit import Actor
from tokens.issuance.broker import grant_keepalive_locked
from tokens.issuance.failures import Failure
from tokens.issuance.identity import IssuedTokens
from tokens.models import ConsentGrant


class GrantNotRefreshable(Exception):
    """The grant holds no usable refresh token (needs renewal, revoked or expired)."""


def grant_refresh_now(*, grant: ConsentGrant, actor: Actor) -> IssuedTokens | Failure:
    """Redeem the refresh token once, now, through the broker's one refresh path (row lock, newest
    refresh token persisted, failure classified). Proves the grant still works and restarts
    Entra's inactivity clock."""
    with transaction.atomic():
        locked = (
            ConsentGrant.objects.select_for_update(of=("self",))
            .select_related("partner", "application")
            .get(pk=grant.pk)
        )
        if locked.state not in (ConsentGrant.State.ACTIVE, ConsentGrant.State.EXPIRING):
            raise GrantNotRefreshable(f"its state is “{locked.get_state_display()}”")
        outcome = grant_keepalive_locked(locked_grant=locked, actor=actor, detail="refresh now, by staff")
    return outcome
