"""Access-token issuance: partner + audience (+ customer tenant) + purpose + actor -> a token.

1. Validate the purpose; find the grant with its kill-switch state in one query.
2. Refuse what must be refused (suspended, not issuable, audience not consented), audited.
3. Serve a cached access token if it has more than five minutes left.
4. Otherwise take the grant's row lock (PostgreSQL `SELECT ... FOR UPDATE`), look at the cache
   again (another caller may have filled it while we waited), and only then redeem the refresh
   token. However many callers miss at once, across processes and hosts, one request reaches
   the identity provider; the rest wait on the lock and find the cache filled.
5. Persist the newest refresh token and the audit event in that same transaction, and return the
   token only after the commit. If the audit write fails, the transaction fails and no token
   leaves (fail closed). A crash between the provider's answer and the commit loses nothing: the
   stored refresh token is still valid, because Entra does not revoke a refresh token when it
   issues its successor.

Why a row lock and not a Redis lock: the lock and the refresh-token write share one transaction,
so there is no lock expiry to tune against slow answers (the race Nango's Redis lock has, issue
#1005), no owner token to compare, and a crashed holder releases it with its connection. The cost
is one database connection per waiting caller for at most the provider timeout. On SQLite (demo
only) row locks do not exist; two demo processes may then both redeem, which Entra tolerates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import tink
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from partners.models import Partner
from tokens.audit import Actor, audit_record, purpose_validate
from tokens.encryption.keyset import keyset_get
from tokens.failures import Failure, FailureClass
from tokens.identity import IssuedTokens, refresh_token_redeem
from tokens.metrics import IDENTITY_FAILURES, IDENTITY_SECONDS, ISSUED, TOKEN_CACHE, token_request_count
from tokens.models import Application, AuditEvent, ConsentGrant
from tokens.vault import grant_record_failure, grant_record_refresh

MINIMUM_REMAINING = timedelta(minutes=5)
LAST_USED_RESOLUTION = timedelta(minutes=1)
State = ConsentGrant.State


class BrokerError(Exception):
    """A typed refusal. `code` is stable (API problem types use it); `message` is safe to show."""

    code = "broker_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(BrokerError):
    code = "invalid_request"


class NoGrant(BrokerError):
    code = "no_grant"


class GrantNeedsRenewal(BrokerError):
    code = "needs_renewal"


class GrantRevoked(BrokerError):
    code = "revoked"


class GrantExpired(BrokerError):
    code = "expired"


class AudienceNotConsented(BrokerError):
    code = "audience_not_consented"


class IssuanceSuspended(BrokerError):
    code = "issuance_suspended"


class CustomerAccessRefused(BrokerError):
    code = "customer_refused"


class IdentityProviderUnavailable(BrokerError):
    code = "identity_provider_unavailable"


_STATE_ERRORS: dict[str, type[BrokerError]] = {
    State.NEEDS_RENEWAL: GrantNeedsRenewal,
    State.REVOKED: GrantRevoked,
    State.EXPIRED: GrantExpired,
}


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime
    audience: str
    scope: str
    customer_tenant_id: str | None


def application_default() -> Application:
    """The deployment's application when the caller names none (most deployments have one)."""
    application = Application.objects.order_by("created_at").first()
    if application is None:
        raise NoGrant("no application is configured")
    return application


def _cache_key(grant: ConsentGrant, audience: str, customer_tenant_id: str | None) -> str:
    return f"at:{grant.pk}:{grant.generation}:{audience}:{customer_tenant_id or '-'}"


def _cache_get(key: str, *, now: datetime) -> AccessToken | None:
    sealed = cache.get(key)
    if sealed is None:
        return None
    try:
        payload: dict[str, Any] = json.loads(keyset_get().primitive.decrypt(sealed, key.encode()))
    except tink.TinkError:  # written under a retired key, or tampered with: refetch
        return None
    expires_at = datetime.fromisoformat(payload["expires_at"])
    if expires_at - now <= MINIMUM_REMAINING:
        return None
    return AccessToken(
        payload["token"], expires_at, payload["audience"], payload["scope"], payload["customer"]
    )


def _cache_put(key: str, token: AccessToken, *, now: datetime) -> None:
    ttl = int((token.expires_at - now - MINIMUM_REMAINING).total_seconds())
    if ttl <= 0:
        return
    payload = {
        "token": token.token,
        "expires_at": token.expires_at.isoformat(),
        "audience": token.audience,
        "scope": token.scope,
        "customer": token.customer_tenant_id,
    }
    # Encrypted with the vault's keyset and bound to its key: a Redis dump yields nothing, and a
    # value copied under another grant's or generation's key does not decrypt.
    cache.set(key, keyset_get().primitive.encrypt(json.dumps(payload).encode(), key.encode()), ttl)


# The grant lookup every token request makes, written out: the ORM spent more CPU composing and
# compiling this query than the database spent answering it (profiled on a cache hit: 0.63 ms of
# CPU per call through the ORM, 0.27 ms as raw()). Only the columns issuance reads are selected;
# the other fields are deferred (reading one costs a query, which the query-count tests notice).
# `suspended` is the kill switch: an engaged switch for all applications or for the grant's own.
_GRANT_SQL = """
SELECT g.id, g.partner_id, g.application_id, g.state, g.generation, g.audiences, g.last_used_at,
       p.status AS partner_status, p.display_name AS partner_display_name,
       EXISTS (SELECT 1 FROM tokens_killswitch k
               WHERE k.engaged AND (k.application_id IS NULL OR k.application_id = g.application_id))
           AS suspended{scope}
FROM tokens_consentgrant g JOIN partners_partner p ON p.id = g.partner_id
WHERE p.tenant_id = %(tenant)s{application}
LIMIT 2
"""
_SCOPE_SQL = """,
       EXISTS (SELECT 1 FROM tokens_serviceclient_partners s
               WHERE s.serviceclient_id = %(client)s AND s.partner_id = g.partner_id) AS in_scope"""


def grants_find(
    *,
    partner_tenant_id: uuid.UUID,
    application: Application | None = None,
    scope_client_id: int | None = None,
) -> list[ConsentGrant]:
    """The partner's grants (for one application, if named), at most two, in one query: each with
    its partner (status and name), its kill-switch state (`suspended`) and, given a partner-scoped
    service client, whether that client's scope lists the partner (`in_scope`). Issuance starts
    from these rows."""
    params: dict[str, Any] = {
        "tenant": Partner._meta.get_field("tenant_id").get_db_prep_value(partner_tenant_id, connection)
    }
    application_sql = scope_sql = ""
    if application is not None:
        application_sql = " AND g.application_id = %(application)s"
        params["application"] = Application._meta.pk.get_db_prep_value(application.pk, connection)
    if scope_client_id is not None:
        scope_sql = _SCOPE_SQL
        params["client"] = scope_client_id
    sql = _GRANT_SQL.format(scope=scope_sql, application=application_sql)
    found = list(ConsentGrant.objects.raw(sql, params))
    for grant in found:
        grant.suspended = bool(grant.suspended)  # type: ignore[attr-defined]  # SQLite answers 0 or 1
        # Values in the model's field order (id, tenant_id, display_name, status); the rest deferred.
        grant.partner = Partner.from_db(
            grant._state.db,
            ["id", "tenant_id", "display_name", "status"],
            [grant.partner_id, partner_tenant_id, grant.partner_display_name, grant.partner_status],  # type: ignore[attr-defined]
        )
        if scope_client_id is not None:
            grant.in_scope = bool(grant.in_scope)  # type: ignore[attr-defined]
    return found


def _grant_pick(found: list[ConsentGrant], partner: Partner) -> ConsentGrant:
    """The grant among the partner's (at most two) rows from grants_find(). Without an application
    named, the partner's only grant is meant (most deployments have one application)."""
    if not found:
        raise NoGrant(f"{partner.display_name} has no grant for this application")
    if len(found) > 1:
        raise InvalidRequest("the partner has grants for several applications: name the application")
    return found[0]


def refusal_record(
    error: BrokerError,
    *,
    actor: Actor,
    audience: str,
    customer: uuid.UUID | str | None,
    purpose: str,
    grant: ConsentGrant | None = None,
    partner: Partner | None = None,
) -> BrokerError:
    """Audit and count a refused token request (the broker's, or the service API's) and return the error."""
    token_request_count(audience=audience, outcome=error.code)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.TOKEN_DENIED,
        outcome=AuditEvent.Outcome.DENIED,
        grant=grant,
        partner=partner,
        audience=audience,
        customer_tenant_id=customer,
        purpose=purpose,
        error_code=error.code,
        detail=error.message,
    )
    return error


def _check_issuable(grant: ConsentGrant, audience: str) -> BrokerError | None:
    # A grant not read through grants_find() has no kill-switch state: treat it as suspended.
    if getattr(grant, "suspended", True):
        return IssuanceSuspended("token issuance is suspended by the operator (kill switch)")
    if grant.partner.status == Partner.Status.SUSPENDED:
        return IssuanceSuspended("this partner is suspended by the operator")
    if grant.state in _STATE_ERRORS:
        return _STATE_ERRORS[grant.state](f"the grant is {grant.get_state_display().lower()}")
    if audience not in grant.audiences:
        return AudienceNotConsented(f"the partner did not consent to the audience '{audience}'")
    return None


def _issued_audit(
    grant: ConsentGrant, token: AccessToken, *, actor: Actor, purpose: str, refreshed: bool
) -> None:
    audit_record(
        actor=actor,
        action=AuditEvent.Action.TOKEN_ISSUED,
        grant=grant,
        audience=token.audience,
        customer_tenant_id=token.customer_tenant_id,
        purpose=purpose,
        detail="refreshed from the identity provider" if refreshed else "served from cache",
    )


def _last_used_stale(grant: ConsentGrant, now: datetime) -> bool:
    # At most one UPDATE a minute per grant: a busy grant must not serialize on its own row.
    return grant.last_used_at is None or now - grant.last_used_at >= LAST_USED_RESOLUTION


def _failure_error(failure: Failure) -> BrokerError:
    if failure.failure_class is FailureClass.PARTNER:
        return GrantNeedsRenewal(failure.message)
    if failure.failure_class is FailureClass.CUSTOMER:
        return CustomerAccessRefused(failure.message)
    if failure.failure_class is FailureClass.OPERATOR:
        return IdentityProviderUnavailable(
            "the application's own credential was refused; the operator has been alerted", retry_after=300
        )
    return IdentityProviderUnavailable(failure.message, retry_after=failure.retry_after or 5)


def grant_redeem_locked(
    *, locked_grant: ConsentGrant, audience: str, customer: str | None, actor: Actor
) -> IssuedTokens | Failure:
    """Redeem the grant's refresh token for one audience and record the outcome: the new refresh
    token, or the classified failure. The one refresh code path, shared by the broker and the
    renewal engine. Call inside a transaction holding the grant's row lock."""
    with IDENTITY_SECONDS.labels(operation="refresh").time():
        outcome = refresh_token_redeem(
            application=locked_grant.application,
            refresh_token=locked_grant.refresh_token,
            audience=audience,
            tenant=customer or locked_grant.application.authority_tenant,
            for_customer=customer is not None,
        )
    if isinstance(outcome, IssuedTokens):
        grant_record_refresh(locked_grant=locked_grant, issued=outcome)
    else:
        IDENTITY_FAILURES.labels(operation="refresh", failure_class=outcome.failure_class.value).inc()
        grant_record_failure(
            locked_grant=locked_grant,
            failure=outcome,
            actor=actor,
            audience=audience,
            customer_tenant_id=customer,
        )
    return outcome


def grant_keepalive_locked(
    *, locked_grant: ConsentGrant, actor: Actor, detail: str
) -> IssuedTokens | Failure:
    """Redeem the refresh token once for the application's consent audience, to prove the grant
    works and restart Entra's inactivity clock; audited as a refresh when it succeeds. Used by the
    renewal engine and by staff's "refresh now". Call with the grant's row lock held."""
    consent_audience = locked_grant.application.consent_audience
    audience = consent_audience if consent_audience in locked_grant.audiences else locked_grant.audiences[0]
    outcome = grant_redeem_locked(locked_grant=locked_grant, audience=audience, customer=None, actor=actor)
    if isinstance(outcome, IssuedTokens):
        audit_record(
            actor=actor,
            action=AuditEvent.Action.REFRESHED,
            grant=locked_grant,
            audience=audience,
            detail=detail,
        )
    return outcome


def access_token_get(
    *,
    partner: Partner,
    audience: str,
    purpose: str,
    actor: Actor,
    customer_tenant: str | None = None,
    application: Application | None = None,
) -> AccessToken:
    """Return an access token for one audience, or raise a BrokerError subclass."""
    purpose = _purpose_clean(purpose)
    return access_token_issue(
        found=grants_find(partner_tenant_id=partner.tenant_id, application=application),
        partner=partner,
        audience=audience,
        purpose=purpose,
        actor=actor,
        customer_tenant=customer_tenant,
    )


def _purpose_clean(purpose: str) -> str:
    try:
        return purpose_validate(purpose)
    except ValueError as error:
        raise InvalidRequest(str(error)) from error


def access_token_issue(
    *,
    found: list[ConsentGrant],
    partner: Partner,
    audience: str,
    purpose: str,
    actor: Actor,
    customer_tenant: str | None = None,
) -> AccessToken:
    """Return an access token from the partner's grant, or raise a BrokerError subclass. `found`
    holds grants_find()'s rows for this partner (and application, if one is named): the service
    API finds them in the same query as its partner-scope check."""
    purpose = _purpose_clean(purpose)
    grant = _grant_pick(found, partner)
    customer = str(customer_tenant).lower() if customer_tenant else None
    refusal = _check_issuable(grant, audience)
    if refusal is not None:
        raise refusal_record(
            refusal, grant=grant, actor=actor, audience=audience, customer=customer, purpose=purpose
        )

    key = _cache_key(grant, audience, customer)
    now = timezone.now()
    cached = _cache_get(key, now=now)
    TOKEN_CACHE.labels(result="miss" if cached is None else "hit").inc()
    if cached is not None:
        if _last_used_stale(grant, now):
            with transaction.atomic():
                _issued_audit(grant, cached, actor=actor, purpose=purpose, refreshed=False)
                ConsentGrant.objects.filter(pk=grant.pk).update(last_used_at=now)
        else:
            # One INSERT in autocommit: the audit row is durable before the token leaves.
            _issued_audit(grant, cached, actor=actor, purpose=purpose, refreshed=False)
        token_request_count(audience=audience, outcome=ISSUED)
        return cached

    failure: Failure | None = None
    with transaction.atomic():
        locked = (
            ConsentGrant.objects.select_for_update(of=("self",))
            .select_related("partner", "application")
            .get(pk=grant.pk)
        )
        if locked.generation != grant.generation or not locked.is_issuable:
            raise GrantRevoked("the grant changed while the token was requested; ask again")
        key = _cache_key(locked, audience, customer)
        token = _cache_get(key, now=timezone.now())
        refreshed = token is None
        if token is None:
            outcome = grant_redeem_locked(
                locked_grant=locked, audience=audience, customer=customer, actor=actor
            )
            if isinstance(outcome, IssuedTokens):
                token = AccessToken(
                    outcome.access_token, outcome.expires_at, audience, outcome.scope, customer
                )
            else:
                failure = outcome
        if token is not None:
            _issued_audit(locked, token, actor=actor, purpose=purpose, refreshed=refreshed)
            ConsentGrant.objects.filter(pk=locked.pk).update(last_used_at=timezone.now())
            if refreshed:
                # Before the commit releases the lock, so the next waiter finds it.
                _cache_put(key, token, now=timezone.now())
    if failure is not None:
        error = _failure_error(failure)
        token_request_count(audience=audience, outcome=error.code)
        raise error
    assert token is not None
    token_request_count(audience=audience, outcome=ISSUED)
    return token
