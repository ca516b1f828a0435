"""The append-only audit trail: who did what with which grant, for which stated purpose."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from partners.models import Partner
from tokens.models import Application, AuditEvent, ConsentGrant

PURPOSE_MAX_LENGTH = 500


class InvalidPurpose(ValueError):
    """The caller's purpose is missing, too long or not printable text."""


def purpose_validate(purpose: str) -> str:
    """Every issuance must say why (Secure Application Model: access identifies its purpose)."""
    cleaned = (purpose or "").strip()
    if not cleaned:
        raise InvalidPurpose("a purpose is required: say why the token is needed")
    if len(cleaned) > PURPOSE_MAX_LENGTH:
        raise InvalidPurpose(f"the purpose is longer than {PURPOSE_MAX_LENGTH} characters")
    if not cleaned.isprintable():
        raise InvalidPurpose("the purpose contains control characters")
    return cleaned


@dataclass(frozen=True)
class Actor:
    """Who acts: a service client, a staff user, a partner user or the system itself."""

    type: AuditEvent.ActorType
    id: str
    client_ip: str | None = None
    request_id: str = ""

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(type=AuditEvent.ActorType.SYSTEM, id=component)

    @classmethod
    def staff(cls, user_id: int | str, client_ip: str | None = None) -> Actor:
        return cls(type=AuditEvent.ActorType.STAFF, id=str(user_id), client_ip=client_ip)


def audit_fields(
    *,
    actor: Actor,
    audience: str = "",
    purpose: str = "",
    error_code: str = "",
    detail: str = "",
) -> dict[str, str | None]:
    """The caller-supplied text of an audit event, cut to its columns: for audit_record() and for
    the broker's written-out INSERT (tokens.issuance.broker), so both store the same thing."""
    return {
        "actor_type": actor.type,
        "actor_id": actor.id[:128],
        "audience": audience,
        "purpose": purpose[:PURPOSE_MAX_LENGTH],
        "error_code": error_code[:64],
        "detail": detail[:500],
        "client_ip": actor.client_ip,
        "request_id": actor.request_id[:64],
    }


def audit_record(
    *,
    actor: Actor,
    action: AuditEvent.Action,
    outcome: AuditEvent.Outcome = AuditEvent.Outcome.SUCCESS,
    partner: Partner | None = None,
    grant: ConsentGrant | None = None,
    application: Application | None = None,
    audience: str = "",
    customer_tenant_id: uuid.UUID | str | None = None,
    purpose: str = "",
    error_code: str = "",
    detail: str = "",
) -> AuditEvent:
    """Write one audit event. Callers run it inside their own transaction so that the event and
    the change it describes commit together, or neither does."""
    # The grant's partner and application by id: reading `grant.application` would cost a query
    # whenever the caller's grant query did not join it (the broker's hit path does not).
    partner_id = partner.pk if partner is not None else grant.partner_id if grant is not None else None
    application_id = (
        application.pk if application is not None else grant.application_id if grant is not None else None
    )
    return AuditEvent.objects.create(
        action=action,
        outcome=outcome,
        partner_id=partner_id,
        grant=grant,
        application_id=application_id,
        customer_tenant_id=customer_tenant_id,
        **audit_fields(actor=actor, audience=audience, purpose=purpose, error_code=error_code, detail=detail),
    )
