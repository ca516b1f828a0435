"""The GDAP inventory: each partner's relationships with its customers, read from Microsoft Graph.

1. `gdap_inventory_sweep` (beat, with the renewal sweep: every RENEWAL_SWEEP_MINUTES) picks partners
   with a grant that may read Graph whose last read attempt is older than
   GDAP_INVENTORY_REFRESH_MINUTES, at most GDAP_SWEEP_CAP, leases each (`Inventory.enqueued_until`)
   and enqueues one `gdap_inventory_refresh_task(partner_id)` per partner after the commit. Then it
   sends the warnings of relationships ending soon (gdap.warnings).
2. `gdap_inventory_refresh` (the task's body; staff's "refresh now"): gets a delegated Graph token
   from the broker (audited with its purpose), reads every page of the relationships and, for those
   that can have them, their access assignments; only a complete read changes anything, in one
   transaction: relationships are created or updated, and those no longer listed are marked gone.
   Running it twice is harmless (idempotent); two at once serialise on the inventory row.
3. A read that fails (the broker refuses the token, Graph answers 403 without the permission, a
   malformed page, a nextLink to another host, a timeout) changes no relationship: the failure is
   recorded on the inventory (`error_code`, `error`) for staff and the partner, and transient ones
   are retried by the task with backoff.

An empty list where the inventory held relationships is not believed: Microsoft answers a user who
is not (or no longer) an Admin Agent with an empty list (docs/sandbox.md), and believing it would
refuse every customer of the partner.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from gdap.graph import GraphReadError, RelationshipRead, access_assignments_read, relationships_read
from gdap.models import Inventory, Relationship
from partners.models import AgentRole, Partner
from tokens.audit import Actor
from tokens.issuance.broker import BrokerError, IdentityProviderUnavailable, access_token_get
from tokens.models import ConsentGrant

logger = logging.getLogger(__name__)

INVENTORY_ACTOR = Actor.system("gdap-inventory")
GRAPH_AUDIENCE = "graph"
PURPOSE = "Read the partner's GDAP relationships with its customers (the panel's customer inventory)"
# Relationships whose access assignments are read: those that can have live ones. The others either
# have none yet or only deleted ones (sandbox/gdap.py follows the same rule).
ASSIGNMENT_STATUSES = frozenset({"active", "terminationRequested"})
NO_EXTENSION = frozenset({"PT0S", "P0D"})  # autoExtendDuration values that extend nothing


class Outcome(enum.StrEnum):
    READ = "read"
    FAILED = "failed"
    TRANSIENT = "transient"
    MISSING = "missing"


@dataclass(frozen=True)
class InventoryRefresh:
    partner_id: str
    outcome: Outcome
    error_code: str = ""
    error: str = ""
    retry_after: int | None = None
    relationships: int = 0
    gone: int = 0
    changed: list[str] = field(default_factory=list)  # "<name>: <old> -> <new>" of status changes


@dataclass
class SweepReport:
    partner_ids: list[str] = field(default_factory=list)
    warned: int = 0


def inventory_grants() -> QuerySet[ConsentGrant]:
    """Grants that may read a partner's relationships: issuable and consented by an admin agent
    (Microsoft answers anyone else an empty list). Whether one covers Graph is checked on the rows
    (`_grant_for`): JSON containment has no SQLite form, and the demo runs on SQLite."""
    return ConsentGrant.objects.filter(
        state__in=ConsentGrant.ISSUABLE_STATES, consented_by_role=AgentRole.ADMIN_AGENT
    )


def _grant_for(partner: Partner) -> ConsentGrant | None:
    grants = inventory_grants().filter(partner=partner).select_related("application")
    return next(
        (g for g in grants.order_by("application__created_at") if GRAPH_AUDIENCE in g.audiences), None
    )


def _auto_extends(duration: str) -> bool:
    return bool(duration) and duration not in NO_EXTENSION


def _failed(
    inventory_partner: Partner, error: GraphReadError | BrokerError, *, now: datetime
) -> InventoryRefresh:
    if isinstance(error, GraphReadError):
        code, message, transient, retry_after = error.code, error.message, error.transient, error.retry_after
    else:
        code, message = (
            f"TOKEN_{error.code.upper()}",
            f"The panel could not get a Graph token: {error.message}",
        )
        transient, retry_after = isinstance(error, IdentityProviderUnavailable), error.retry_after
    # A failure no retry can fix ends this read: its lease is released, so a refused customer request
    # or staff may ask again at once. A transient one keeps it while the task retries.
    released = {} if transient else {"enqueued_until": None}
    Inventory.objects.filter(partner=inventory_partner).update(
        attempted_at=now, error_code=code[:64], error=message[:500], **released
    )
    logger.warning(
        "GDAP inventory read failed", extra={"partner_id": str(inventory_partner.pk), "code": code}
    )
    return InventoryRefresh(
        str(inventory_partner.pk),
        Outcome.TRANSIENT if transient else Outcome.FAILED,
        error_code=code,
        error=message,
        retry_after=retry_after,
    )


def _refused(partner: Partner, code: str, message: str, *, now: datetime) -> InventoryRefresh:
    return _failed(partner, GraphReadError(code, message), now=now)


def gdap_inventory_refresh(
    *, partner_id: uuid.UUID | str, actor: Actor = INVENTORY_ACTOR
) -> InventoryRefresh:
    """Read the partner's relationships from Graph and store them; see the module docstring."""
    now = timezone.now()
    partner = Partner.objects.filter(pk=partner_id).first()
    if partner is None:
        return InventoryRefresh(str(partner_id), Outcome.MISSING)
    Inventory.objects.get_or_create(partner=partner)
    if partner.status == Partner.Status.SUSPENDED:
        return _refused(partner, "PARTNER_SUSPENDED", "The partner is suspended: nothing is read.", now=now)
    grant = _grant_for(partner)
    if grant is None:
        return _refused(
            partner,
            "NO_GRANT",
            "No working grant of this partner covers Microsoft Graph with an admin agent's consent "
            "(Microsoft lists GDAP relationships to Admin Agents only).",
            now=now,
        )
    try:
        token = access_token_get(
            partner=partner,
            audience=GRAPH_AUDIENCE,
            purpose=PURPOSE,
            actor=actor,
            application=grant.application,
        )
        read = relationships_read(access_token=token.token)
        assignments = {
            r.id: access_assignments_read(access_token=token.token, relationship_id=r.id)
            for r in read
            if r.status in ASSIGNMENT_STATUSES
        }
    except (BrokerError, GraphReadError) as error:
        return _failed(partner, error, now=now)
    if not read and Relationship.objects.filter(partner=partner, gone_at=None).exists():
        return _refused(
            partner,
            "EMPTY_ANSWER",
            "Graph listed no relationship where the panel knew some. Microsoft answers so when the "
            "consenting user is not (or no longer) an Admin Agent; nothing was changed. An admin agent "
            "should renew the consent.",
            now=now,
        )
    return _store(partner, read, assignments, now=now)


def _store(
    partner: Partner, read: list[RelationshipRead], assignments: dict[str, list], now: datetime
) -> InventoryRefresh:
    changed: list[str] = []
    with transaction.atomic():
        # Serialises two refreshes of the same partner: the later commit wins, with a complete read.
        Inventory.objects.select_for_update().get(partner=partner)
        known = {r.relationship_id: r for r in Relationship.objects.filter(partner=partner)}
        for item in read:
            status = item.status if item.status in Relationship.Status.values else Relationship.Status.UNKNOWN
            values = {
                "display_name": item.display_name,
                "customer_tenant_id": item.customer_tenant_id,
                "customer_name": item.customer_name,
                "status": status,
                "roles": list(item.roles),
                "access_assignments": [
                    {"group": a.group, "type": a.type, "status": a.status, "roles": list(a.roles)}
                    for a in assignments.get(item.id, [])
                ],
                "duration": item.duration,
                "auto_extend_duration": item.auto_extend_duration,
                "auto_extends": _auto_extends(item.auto_extend_duration),
                "requested_at": item.requested_at,
                "activated_at": item.activated_at,
                "ends_at": item.ends_at,
                "last_seen_at": now,
                "gone_at": None,
            }
            existing = known.pop(item.id, None)
            if existing is None:
                Relationship.objects.create(
                    partner=partner, relationship_id=item.id, first_seen_at=now, **values
                )
                continue
            if existing.status != status:
                changed.append(f"{item.display_name}: {existing.status} -> {status}")
            Relationship.objects.filter(pk=existing.pk).update(**values)
        gone = Relationship.objects.filter(pk__in=[r.pk for r in known.values() if r.gone_at is None]).update(
            gone_at=now
        )
        Inventory.objects.filter(partner=partner).update(
            read_at=now, attempted_at=now, error_code="", error="", enqueued_until=None
        )
    if changed or gone:
        logger.info(
            "GDAP inventory changed",
            extra={"partner_id": str(partner.pk), "changed": len(changed), "gone": gone},
        )
    return InventoryRefresh(
        str(partner.pk), Outcome.READ, relationships=len(read), gone=gone, changed=changed
    )


def inventories_due(*, now: datetime) -> QuerySet[Partner]:
    """Partners whose relationships should be read now: an inventory grant, not suspended, last
    attempt older than GDAP_INVENTORY_REFRESH_MINUTES (or none), not leased. Oldest attempt first."""
    cutoff = now - timedelta(minutes=settings.GDAP_INVENTORY_REFRESH_MINUTES)
    return (
        Partner.objects.filter(Exists(inventory_grants().filter(partner=OuterRef("pk"))))
        .exclude(status=Partner.Status.SUSPENDED)
        .filter(
            Q(gdap_inventory__isnull=True)
            | Q(gdap_inventory__attempted_at__isnull=True)
            | Q(gdap_inventory__attempted_at__lte=cutoff)
        )
        .filter(
            Q(gdap_inventory__isnull=True)
            | Q(gdap_inventory__enqueued_until__isnull=True)
            | Q(gdap_inventory__enqueued_until__lte=now)
        )
        .order_by("gdap_inventory__attempted_at", "pk")
    )


def _enqueue(partner_ids: list[str], requested_by: str | None = None) -> None:
    from gdap.tasks import gdap_inventory_refresh_task  # the tasks module imports this one

    for partner_id in partner_ids:
        gdap_inventory_refresh_task.delay(partner_id, requested_by)


def gdap_inventory_sweep(*, now: datetime | None = None, cap: int | None = None) -> SweepReport:
    """Enqueue a refresh for each partner due (at most `cap`), after the commit of their leases; then
    send the warnings of relationships ending soon. Two sweeps at once lease disjoint partners: the
    lease is a conditional UPDATE."""
    from gdap.warnings import gdap_warnings_send

    now = now or timezone.now()
    cap = settings.GDAP_SWEEP_CAP if cap is None else cap
    report = SweepReport()
    due = [str(pk) for pk in inventories_due(now=now).values_list("pk", flat=True)[:cap]]
    until = now + timedelta(seconds=settings.GDAP_LEASE_SECONDS)
    with transaction.atomic():
        Inventory.objects.bulk_create([Inventory(partner_id=pk) for pk in due], ignore_conflicts=True)
        free = Q(enqueued_until__isnull=True) | Q(enqueued_until__lte=now)
        for partner_id in due:
            if Inventory.objects.filter(free, partner_id=partner_id).update(enqueued_until=until):
                report.partner_ids.append(partner_id)
        if report.partner_ids:
            transaction.on_commit(partial(_enqueue, list(report.partner_ids)))
    report.warned = gdap_warnings_send(now=now)
    return report


def gdap_inventory_refresh_now(*, partner_ids: list[str], requested_by: str) -> int:
    """Staff's "refresh now": enqueue a read of each partner's relationships at once, whatever its
    schedule (a read already queued stands). The read's Graph token is audited with the staff user
    (`requested_by`, their user id) as the actor. Returns how many were enqueued."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.GDAP_LEASE_SECONDS)
    enqueued: list[str] = []
    with transaction.atomic():
        Inventory.objects.bulk_create([Inventory(partner_id=pk) for pk in partner_ids], ignore_conflicts=True)
        for partner_id in partner_ids:
            free = Q(enqueued_until__isnull=True) | Q(enqueued_until__lte=now)
            if Inventory.objects.filter(free, partner_id=partner_id).update(enqueued_until=until):
                enqueued.append(str(partner_id))
        if enqueued:
            transaction.on_commit(partial(_enqueue, enqueued, requested_by))
    return len(enqueued)
