"""The vault: the only code that writes a grant's refresh token or moves its state.

Every function takes the grant row lock (or is called with it held, as documented), writes its
audit event in the same transaction, and bumps the generation when cached access tokens must stop
being served (renew, revoke, expire).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from partners.models import AgentRole, Partner
from tokens.audiences import audience_names
from tokens.audit import Actor, audit_record
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import IssuedTokens
from tokens.metrics import CONSENTS
from tokens.models import Application, AuditEvent, ConsentGrant
from tokens.renewal.alerts import operator_alert_raise
from tokens.renewal.notifications import EXPIRED, NEEDS_RENEWAL, REVOKED, notification_send_once

State = ConsentGrant.State


@dataclass(frozen=True)
class ConsentRecord:
    """What a verified consent tells us; built by onboarding after the ID token is verified."""

    tenant_id: str
    tenant_name: str
    tenant_domain: str
    consented_by_oid: str
    consented_by_upn: str
    consented_by_role: AgentRole
    mfa: bool
    audiences: list[str]
    refresh_token: str = field(repr=False)  # never in a repr (error pages, logs of locals)


class ConsentNotAllowed(Exception):
    """Only an admin agent may replace an existing grant or re-activate a revoked one."""

    def __init__(self, *, consented_by: str, consented_at: datetime, revoked: bool) -> None:
        super().__init__(f"already connected by {consented_by}")
        self.consented_by = consented_by
        self.consented_at = consented_at
        self.revoked = revoked

    @classmethod
    def for_grant(cls, grant: ConsentGrant) -> ConsentNotAllowed:
        return cls(
            consented_by=grant.consented_by_upn,
            consented_at=grant.consented_at,
            revoked=grant.state == State.REVOKED,
        )


def _fit(model: type[models.Model], field: str, value: str) -> str:
    """Names from Entra run longer than our columns (a tenant's or user's displayName up to 256
    characters): stored cut to the column, never refused by the database mid-consent."""
    column = model._meta.get_field(field)
    assert isinstance(column, models.CharField)  # a programming error, not input
    return value[: column.max_length]


def grant_record_consent(*, application: Application, consent: ConsentRecord, actor: Actor) -> ConsentGrant:
    """Create the partner and its grant, or renew an existing grant, atomically. Raises
    ConsentNotAllowed when the grant exists and the consenting user is not an admin agent."""
    now = timezone.now()
    with transaction.atomic():
        partner, _ = Partner.objects.select_for_update().get_or_create(
            tenant_id=consent.tenant_id,
            defaults={
                "display_name": _fit(Partner, "display_name", consent.tenant_name),
                "domain": _fit(Partner, "domain", consent.tenant_domain),
            },
        )
        grant = (
            ConsentGrant.objects.select_for_update().filter(partner=partner, application=application).first()
        )
        if grant is not None and consent.consented_by_role != AgentRole.ADMIN_AGENT:
            raise ConsentNotAllowed.for_grant(grant)
        renewing = grant is not None
        if grant is None:
            grant = ConsentGrant(partner=partner, application=application, generation=0)
        grant.generation += 1
        grant.state = State.ACTIVE
        grant.consented_by_oid = consent.consented_by_oid
        grant.consented_by_upn = _fit(ConsentGrant, "consented_by_upn", consent.consented_by_upn)
        grant.consented_by_role = consent.consented_by_role
        grant.mfa_at_consent = consent.mfa
        grant.consented_at = now
        grant.audiences = consent.audiences
        grant.policy_expires_at = now + timedelta(days=application.policy_days)
        grant.refresh_token = consent.refresh_token
        grant.last_refreshed_at = now
        _failure_clear(grant)
        grant.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.RENEWED if renewing else AuditEvent.Action.CONSENTED,
            grant=grant,
            detail=f"audiences: {', '.join(audience_names(consent.audiences))}; by {consent.consented_by_upn}",
        )
    CONSENTS.labels(kind="renewed" if renewing else "first").inc()
    return grant


def _failure_clear(grant: ConsentGrant) -> None:
    grant.failure_class = ""
    grant.failure_code = ""
    grant.failure_message = ""
    grant.failure_count = 0
    grant.failed_at = None
    grant.next_attempt_at = None


def grant_record_refresh(*, locked_grant: ConsentGrant, issued: IssuedTokens, actor: Actor) -> None:
    """Persist the newest refresh token. Call with the grant row locked, inside the transaction
    that also records the issuance, so the provider's answer and our copy never diverge. A grant
    that needed attention works again: back to active (the expiry sweep marks it expiring again
    if its policy is near its end)."""
    if issued.refresh_token:  # Entra always rotates; never overwrite a token with nothing.
        locked_grant.refresh_token = issued.refresh_token
    locked_grant.last_refreshed_at = timezone.now()
    _failure_clear(locked_grant)
    fields = [
        "refresh_token", "last_refreshed_at", "failure_class", "failure_code", "failure_message",
        "failure_count", "failed_at", "next_attempt_at", "updated_at",
    ]  # fmt: skip
    if locked_grant.state == State.NEEDS_ATTENTION:
        locked_grant.state = State.ACTIVE
        fields.append("state")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.STATE_CHANGED,
            grant=locked_grant,
            detail=f"{State.NEEDS_ATTENTION} -> {State.ACTIVE}: the refresh token was redeemed",
        )
    locked_grant.save(update_fields=fields)


def grant_record_failure(
    *,
    locked_grant: ConsentGrant,
    failure: Failure,
    actor: Actor,
    audience: str = "",
    customer_tenant_id: str | None = None,
) -> None:
    """Record a failed redemption by class. Call with the grant row locked.

    transient: failure noted, state unchanged; partner: needs_renewal and the partner e-mailed
    (after commit, once per generation); operator: one alert that pauses the application and the
    grant untouched; attention: needs_attention (still tried, with backoff) and an alert that
    pauses nothing; customer: only the audit event.
    """
    audit_record(
        actor=actor,
        action=AuditEvent.Action.REFRESH_FAILED,
        outcome=AuditEvent.Outcome.FAILURE,
        grant=locked_grant,
        audience=audience,
        customer_tenant_id=customer_tenant_id,
        error_code=failure.code,
        detail=f"{failure.failure_class}: {failure.message}",
    )
    if failure.failure_class is FailureClass.OPERATOR:
        operator_alert_raise(application=locked_grant.application, failure=failure)
        return
    if failure.failure_class is FailureClass.CUSTOMER:
        return
    now = timezone.now()
    locked_grant.failure_class = failure.failure_class.value
    locked_grant.failure_code = failure.code
    locked_grant.failure_message = failure.message[:500]
    locked_grant.failure_count = F("failure_count") + 1
    locked_grant.failed_at = now
    fields = ["failure_class", "failure_code", "failure_message", "failure_count", "failed_at", "updated_at"]
    target = {FailureClass.PARTNER: State.NEEDS_RENEWAL, FailureClass.ATTENTION: State.NEEDS_ATTENTION}.get(
        failure.failure_class
    )
    if target is not None and locked_grant.is_issuable and locked_grant.state != target:
        previous = locked_grant.state
        locked_grant.state = target
        fields.append("state")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.STATE_CHANGED,
            grant=locked_grant,
            error_code=failure.code,
            detail=f"{previous} -> {target}",
        )
    locked_grant.save(update_fields=fields)
    locked_grant.refresh_from_db(fields=["failure_count"])
    if failure.failure_class is FailureClass.ATTENTION:
        operator_alert_raise(application=locked_grant.application, failure=failure)
    if locked_grant.state == State.NEEDS_RENEWAL:
        notification_send_once(grant=locked_grant, condition=NEEDS_RENEWAL)


def grant_revoke(*, grant: ConsentGrant, actor: Actor, reason: str = "") -> ConsentGrant:
    """Destroy the token material at once; cached access tokens become unusable in every process
    because their cache key carries the old generation."""
    with transaction.atomic():
        # Only the grant's row: FOR UPDATE over the join would also lock the partner's, which every
        # token request's audit insert holds FOR KEY SHARE (its foreign key) while it waits for this
        # grant: a deadlock under concurrent requests (tests/tokens/issuance/test_broker_concurrency.py).
        locked = (
            ConsentGrant.objects.select_for_update(of=("self",))
            .select_related("partner", "application")
            .get(pk=grant.pk)
        )
        if locked.state == State.REVOKED:
            return locked
        locked.state = State.REVOKED
        locked.refresh_token = None
        locked.generation += 1
        locked.save(update_fields=["state", "refresh_token", "generation", "updated_at"])
        audit_record(actor=actor, action=AuditEvent.Action.REVOKED, grant=locked, detail=reason)
        notification_send_once(grant=locked, condition=REVOKED)
    return locked


def grant_mark_expiring(*, locked_grant: ConsentGrant, actor: Actor) -> None:
    """The policy expiry is near: still issuable, but the dashboard and e-mails say so. Call with
    the grant row locked."""
    if locked_grant.state != State.ACTIVE:
        return
    locked_grant.state = State.EXPIRING
    locked_grant.save(update_fields=["state", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditEvent.Action.STATE_CHANGED,
        grant=locked_grant,
        detail=f"{State.ACTIVE} -> {State.EXPIRING}: policy expires {locked_grant.policy_expires_at:%Y-%m-%d}",
    )


def grant_expire(*, locked_grant: ConsentGrant, actor: Actor) -> None:
    """The policy lapsed (time-bound access): destroy the token material, as revoke does. Call
    with the grant row locked."""
    if locked_grant.state in (State.REVOKED, State.EXPIRED):
        return
    previous = locked_grant.state
    locked_grant.state = State.EXPIRED
    locked_grant.refresh_token = None
    locked_grant.generation += 1
    locked_grant.save(update_fields=["state", "refresh_token", "generation", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditEvent.Action.EXPIRED,
        grant=locked_grant,
        detail=f"{previous} -> {State.EXPIRED}: policy expired {locked_grant.policy_expires_at:%Y-%m-%d}",
    )
    notification_send_once(grant=locked_grant, condition=EXPIRED)
