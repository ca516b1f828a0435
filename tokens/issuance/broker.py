"""Access-token issuance: partner + audience (+ customer tenant) + purpose + actor -> a token.

1. Validate the purpose. On PostgreSQL, try the cache hit: one statement checks the grant, its
   partner, the kill switch, the audience (and a service key's partner scope; for a customer tenant,
   that the GDAP inventory does not rule the customer out: gdap.access), reads the cached
   access token (more than five minutes left) and inserts the audit row only if all of that holds
   (`cached_token_issue`; docs/architecture.md says why one statement, and why the token lives in
   an UNLOGGED PostgreSQL table rather than Redis).
2. Otherwise find the grant with its kill-switch state in one query, and refuse what must be
   refused (suspended, not issuable, audience not consented, a customer tenant the GDAP inventory
   says the partner cannot reach), audited, before anything is asked of the identity provider.
3. Otherwise take the grant's row lock (PostgreSQL `SELECT ... FOR NO KEY UPDATE`), look at the
   cache again (another caller may have filled it while we waited; on SQLite this is where hits
   are served), and only then redeem the refresh token. However many callers miss at once, across
   processes and hosts, one request reaches the identity provider; the rest wait on the lock and
   find the cache filled.
4. Persist the newest refresh token, the cached token and the audit event in that same
   transaction (on PostgreSQL the audit row by the same checked statement as a hit), and return
   the token only after the commit. If the audit write fails, the transaction fails and no token
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
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import tink
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone

from gdap.access import CUSTOMER_RELATIONSHIP_SQL, customer_relationship_refusal, inventory_refresh_soon
from partners.models import Partner
from tokens.audit import Actor, audit_fields, audit_record, purpose_validate
from tokens.encryption.keyset import keyset_get
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import IssuedTokens, refresh_token_redeem
from tokens.issuance.vault import grant_record_failure, grant_record_refresh
from tokens.metrics import IDENTITY_FAILURES, IDENTITY_SECONDS, ISSUED, TOKEN_CACHE, token_request_count
from tokens.models import Application, AuditEvent, CachedAccessToken, ConsentGrant
from tokens.renewal.alerts import operator_alerts_close_on_success

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


class CustomerRelationshipInactive(BrokerError):
    """The GDAP inventory says no relationship lets the partner into this customer tenant (gdap.access):
    refused before any request reaches the identity provider."""

    code = "gdap_relationship_inactive"


class IdentityProviderUnavailable(BrokerError):
    code = "identity_provider_unavailable"


_STATE_ERRORS: dict[str, type[BrokerError]] = {
    State.NEEDS_RENEWAL: GrantNeedsRenewal,
    State.REVOKED: GrantRevoked,
    State.EXPIRED: GrantExpired,
}


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)  # never in a repr (error pages, logs of locals)
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


def _seal_context(grant_id: object, generation: int, audience: str, customer: str | None) -> bytes:
    # The associated data of a sealed token: a row copied under another grant, generation,
    # audience or customer does not decrypt.
    return f"at:{grant_id}:{generation}:{audience}:{customer or '-'}".encode()


def _unseal(sealed: bytes, context: bytes) -> AccessToken | None:
    try:
        payload: dict[str, Any] = json.loads(keyset_get().primitive.decrypt(bytes(sealed), context))
    except tink.TinkError:  # written under a retired key, or tampered with: refetch
        return None
    return AccessToken(
        payload["token"],
        datetime.fromisoformat(payload["expires_at"]),
        payload["audience"],
        payload["scope"],
        payload["customer"],
    )


def cached_token_get(
    *, grant: ConsentGrant, audience: str, customer: str | None, now: datetime
) -> AccessToken | None:
    """The grant's cached token for this audience and customer, if it has more than five minutes
    left. Checks nothing else: the caller holds the grant's row lock and has checked the grant."""
    sealed = CachedAccessToken.objects.filter(
        grant=grant.pk,
        generation=grant.generation,
        audience=audience,
        customer=customer or "",
        expires_at__gt=now + MINIMUM_REMAINING,
    ).values_list("sealed", flat=True)[:1]
    if not sealed:
        return None
    return _unseal(sealed[0], _seal_context(grant.pk, grant.generation, audience, customer))


def cached_token_put(*, grant: ConsentGrant, token: AccessToken, now: datetime) -> None:
    """Keep a token the identity provider just issued for the grant's current generation, and drop
    what no lookup can serve any more (expired, or of an older generation of this grant)."""
    CachedAccessToken.objects.filter(
        Q(expires_at__lte=now + MINIMUM_REMAINING) | (Q(grant=grant.pk) & ~Q(generation=grant.generation))
    ).delete()
    if token.expires_at - now <= MINIMUM_REMAINING:
        return
    payload = {
        "token": token.token,
        "expires_at": token.expires_at.isoformat(),
        "audience": token.audience,
        "scope": token.scope,
        "customer": token.customer_tenant_id,
    }
    context = _seal_context(grant.pk, grant.generation, token.audience, token.customer_tenant_id)
    # Encrypted with the vault's keyset: a dump of the table yields nothing usable.
    CachedAccessToken.objects.bulk_create(
        [
            CachedAccessToken(
                grant_id=grant.pk,
                generation=grant.generation,
                audience=token.audience,
                customer=token.customer_tenant_id or "",
                expires_at=token.expires_at,
                sealed=keyset_get().primitive.encrypt(json.dumps(payload).encode(), context),
            )
        ],
        update_conflicts=True,
        unique_fields=["grant", "generation", "audience", "customer"],
        update_fields=["expires_at", "sealed"],
    )


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


# The one statement of a cache hit on PostgreSQL, and of the last step of a miss. It reads the
# grant, its partner's status, the kill switch and (for a partner-scoped service client) the scope,
# and, for a hit, the cached token; it inserts the audit row only when every check holds, and
# returns a row only when it did. In autocommit the statement is its own transaction with one
# snapshot: a revoke, a suspension or a kill switch committed before it started is seen, so no
# token can leave after it; the audit row is committed (synchronously) before the answer returns.
# `at` is the statement's start, which is what ordering against a revoke's commit needs.
# The INSERT names the parent table and lets the row's default id apply, so a partitioned audit
# table takes it as it is. The last-use stamp (one UPDATE a minute per grant) skips a grant row
# locked by a refresh or a revoke instead of waiting for it: it is a minute-resolution hint.
_ISSUE_SQL = """
WITH hit AS (
    SELECT g.id, g.partner_id, g.application_id, g.generation{token_columns}
    FROM tokens_consentgrant g JOIN partners_partner p ON p.id = g.partner_id{token_join}
    WHERE {grant_condition}
      AND g.state IN ({issuable})
      AND p.status <> %(partner_suspended)s
      AND g.audiences @> jsonb_build_array(%(audience)s::text)
      AND NOT EXISTS (SELECT 1 FROM tokens_killswitch k
                      WHERE k.engaged AND (k.application_id IS NULL OR k.application_id = g.application_id)){scope}{relationship}
), issued AS (
    INSERT INTO tokens_auditevent (at, actor_type, actor_id, action, outcome, partner_id, grant_id,
                                   application_id, audience, customer_tenant_id, purpose, error_code,
                                   detail, client_ip, request_id)
    SELECT statement_timestamp(), %(actor_type)s, %(actor_id)s, %(action)s, %(outcome)s, hit.partner_id,
           hit.id, hit.application_id, %(audience)s, %(customer)s::uuid, %(purpose)s, %(error_code)s,
           %(detail)s, %(client_ip)s::inet, %(request_id)s
    FROM hit
    RETURNING grant_id
), used AS (
    UPDATE tokens_consentgrant u SET last_used_at = statement_timestamp()
    WHERE u.id IN (SELECT l.id FROM tokens_consentgrant l JOIN hit ON hit.id = l.id
                   WHERE l.last_used_at IS NULL
                      OR l.last_used_at <= statement_timestamp() - %(last_used_resolution)s::interval
                   FOR NO KEY UPDATE OF l SKIP LOCKED)
)
SELECT hit.* FROM hit JOIN issued ON issued.grant_id = hit.id
"""
_ISSUABLE_SQL = ", ".join(f"'{state}'" for state in ConsentGrant.ISSUABLE_STATES)
_HIT_CACHE_COLUMNS = ", t.sealed"
_HIT_CACHE_JOIN = """
    JOIN tokens_cachedaccesstoken t
      ON t.grant_id = g.id AND t.generation = g.generation AND t.audience = %(audience)s
     AND t.customer = %(customer_key)s AND t.expires_at > statement_timestamp() + %(minimum_remaining)s::interval"""
_BY_PARTNER_SQL = "p.tenant_id = %(tenant)s::uuid"
_BY_APPLICATION_SQL = " AND g.application_id = %(application)s::uuid"
# Without an application named, the partner's only grant is meant (as _grant_pick() decides).
_ONLY_GRANT_SQL = """
      AND NOT EXISTS (SELECT 1 FROM tokens_consentgrant o WHERE o.partner_id = g.partner_id AND o.id <> g.id)"""
_BY_GRANT_SQL = "g.id = %(grant)s::uuid AND g.generation = %(generation)s"
_IN_SCOPE_SQL = """
      AND EXISTS (SELECT 1 FROM tokens_serviceclient_partners s
                  WHERE s.serviceclient_id = %(client)s AND s.partner_id = g.partner_id)"""


def _issue_execute(
    *,
    grant_condition: str,
    params: dict[str, Any],
    audience: str,
    customer: str | None,
    purpose: str,
    actor: Actor,
    detail: str,
    with_token: bool,
    scope_client_id: int | None = None,
) -> tuple[Any, ...] | None:
    sql = _ISSUE_SQL.format(
        token_columns=_HIT_CACHE_COLUMNS if with_token else "",
        token_join=_HIT_CACHE_JOIN if with_token else "",
        grant_condition=grant_condition,
        issuable=_ISSUABLE_SQL,
        scope=_IN_SCOPE_SQL if scope_client_id is not None else "",
        # A customer tenant: the GDAP inventory must not say that no relationship lets the partner in.
        relationship=CUSTOMER_RELATIONSHIP_SQL if customer else "",
    )
    params = {
        **params,
        **audit_fields(actor=actor, audience=audience, purpose=purpose, detail=detail),
        "action": AuditEvent.Action.TOKEN_ISSUED.value,
        "outcome": AuditEvent.Outcome.SUCCESS.value,
        "customer": customer,
        "customer_key": customer or "",
        "partner_suspended": Partner.Status.SUSPENDED.value,
        "client": scope_client_id,
        "minimum_remaining": MINIMUM_REMAINING,
        "last_used_resolution": LAST_USED_RESOLUTION,
    }
    with statement_cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


class _PreparingCursor(psycopg.Cursor[Any]):
    """Binds parameters on the server and prepares the statement once per connection. Planning
    the hit statement cost more than running it (EXPLAIN ANALYZE: 0.42 ms against 0.17 ms), and
    Django's default cursor binds on the client, so every call was planned afresh."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)


def statement_cursor() -> CursorWrapper:
    """A cursor for a hot, written-out statement: on PostgreSQL it binds on the server and prepares
    the statement once per connection; elsewhere Django's own cursor. Wrapped as Django wraps its
    own cursors: errors become Django's, and tests count the query."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw_connection = connection.connection
    if raw_connection.prepare_threshold is None:
        # Django turns psycopg's automatic preparation off (for PgBouncer's transaction mode before
        # 1.21), which also refuses explicit preparation. Django's own cursors bind on the client
        # and never prepare, so this affects only this cursor, which asks for it.
        raw_connection.prepare_threshold = sys.maxsize
    raw = _PreparingCursor(raw_connection)
    # django-stubs types these as taking a CursorWrapper; Django passes them the raw cursor.
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    return wrap(raw)  # type: ignore[arg-type]


def cached_token_issue(
    *,
    partner_tenant_id: uuid.UUID,
    audience: str,
    customer: str | None,
    purpose: str,
    actor: Actor,
    application: Application | None = None,
    scope_client_id: int | None = None,
) -> AccessToken | None:
    """A cache hit in one SQL statement (PostgreSQL): every check, the cached token and the audit
    row at once. None when any check fails or nothing usable is cached: the caller then takes the
    multi-statement path, which finds and audits the refusal, or refreshes. Always None on SQLite
    (demo), where that path serves hits too. `purpose` must be validated and `customer` lower case."""
    if connection.vendor != "postgresql":
        return None
    condition = _BY_PARTNER_SQL + (_ONLY_GRANT_SQL if application is None else _BY_APPLICATION_SQL)
    params: dict[str, Any] = {"tenant": partner_tenant_id}
    if application is not None:
        params["application"] = application.pk
    row = _issue_execute(
        grant_condition=condition,
        params=params,
        audience=audience,
        customer=customer,
        purpose=purpose,
        actor=actor,
        detail=_FROM_CACHE,
        with_token=True,
        scope_client_id=scope_client_id,
    )
    if row is None:
        return None
    grant_id, _, _, generation, sealed = row
    # A row that does not decrypt (a retired key) leaves one "served from cache" row without a
    # token: the trail then says more than happened, never less. The refresh path takes over.
    token = _unseal(sealed, _seal_context(grant_id, generation, audience, customer))
    if token is not None:
        TOKEN_CACHE.labels(result="hit").inc()
        token_request_count(audience=audience, outcome=ISSUED)
    return token


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


def _customer_refusal(grant: ConsentGrant, customer: str | None) -> BrokerError | None:
    """A customer tenant the GDAP inventory says the partner cannot reach (gdap.access); such a
    refusal also asks for a fresh read of the partner's relationships, if the last one is not recent."""
    if customer is None:
        return None
    message = customer_relationship_refusal(partner=grant.partner, customer=customer)
    if message is None:
        return None
    inventory_refresh_soon(partner_id=grant.partner_id)
    return CustomerRelationshipInactive(message)


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


_FROM_CACHE = "served from cache"
_REFRESHED = "refreshed from the identity provider"


def _issued_record(
    *, locked_grant: ConsentGrant, token: AccessToken, actor: Actor, purpose: str, refreshed: bool
) -> bool:
    """Audit the issuance of `token` and stamp the grant's last use, with the grant's row lock held.
    On PostgreSQL in the same checked statement as a hit: False, and nothing written, if a check
    fails now (a kill switch or a suspension committed since the grant was read; neither takes the
    grant's lock). SQLite (demo) has one writer at a time and records unconditionally."""
    detail = _REFRESHED if refreshed else _FROM_CACHE
    if connection.vendor == "postgresql":
        row = _issue_execute(
            grant_condition=_BY_GRANT_SQL,
            params={"grant": locked_grant.pk, "generation": locked_grant.generation},
            audience=token.audience,
            customer=token.customer_tenant_id,
            purpose=purpose,
            actor=actor,
            detail=detail,
            with_token=False,
        )
        return row is not None
    audit_record(
        actor=actor,
        action=AuditEvent.Action.TOKEN_ISSUED,
        grant=locked_grant,
        audience=token.audience,
        customer_tenant_id=token.customer_tenant_id,
        purpose=purpose,
        detail=detail,
    )
    now = timezone.now()
    # At most one UPDATE a minute per grant: a busy grant must not serialize on its own row.
    if locked_grant.last_used_at is None or now - locked_grant.last_used_at >= LAST_USED_RESOLUTION:
        ConsentGrant.objects.filter(pk=locked_grant.pk).update(last_used_at=now)
    return True


def _failure_error(failure: Failure) -> BrokerError:
    if failure.failure_class is FailureClass.PARTNER:
        return GrantNeedsRenewal(failure.message)
    if failure.failure_class is FailureClass.CUSTOMER:
        return CustomerAccessRefused(failure.message)
    if failure.failure_class is FailureClass.OPERATOR:
        return IdentityProviderUnavailable(
            "the application's own credential was refused; the operator has been alerted", retry_after=300
        )
    if failure.failure_class is FailureClass.ATTENTION:
        return IdentityProviderUnavailable(
            f"the identity provider answered an unexpected error ({failure.code}); the operator has been alerted",
            retry_after=300,
        )
    return IdentityProviderUnavailable(failure.message, retry_after=failure.retry_after or 5)


# Authority tenants that stand for "the tenant of the signed-in user" (entra-protocol.md section
# 10): a refresh token redeemed there is redeemed in the tenant that issued it.
MULTI_TENANT_AUTHORITIES = frozenset({"organizations", "common"})


def redemption_tenant(*, grant: ConsentGrant, customer: str | None) -> str:
    """Where a grant's refresh token is redeemed: the customer's tenant for a customer (GDAP);
    for the partner, the application's authority tenant while it is `organizations` or `common`
    (one MSAL object serves every partner, as MSAL's own silent refresh does), otherwise the
    partner's own tenant id (as Microsoft's SAM sample does). A specific authority tenant is never
    used for another partner: Entra would refuse the token or issue one in that other tenant.
    docs/architecture.md, "Redemption authority"."""
    if customer:
        return customer
    authority_tenant = grant.application.authority_tenant
    if authority_tenant.lower() in MULTI_TENANT_AUTHORITIES:
        return authority_tenant
    return str(grant.partner.tenant_id)


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
            tenant=redemption_tenant(grant=locked_grant, customer=customer),
            for_customer=customer is not None,
        )
    if isinstance(outcome, IssuedTokens):
        grant_record_refresh(locked_grant=locked_grant, issued=outcome, actor=actor)
        # The application's credential works: its credential alerts close, renewal resumes.
        operator_alerts_close_on_success(application=locked_grant.application)
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
    customer = customer_clean(customer_tenant)
    hit = cached_token_issue(
        partner_tenant_id=partner.tenant_id,
        application=application,
        audience=audience,
        customer=customer,
        purpose=purpose,
        actor=actor,
    )
    if hit is not None:
        return hit
    return access_token_issue(
        found=grants_find(partner_tenant_id=partner.tenant_id, application=application),
        partner=partner,
        audience=audience,
        purpose=purpose,
        actor=actor,
        customer_tenant=customer,
    )


def customer_clean(customer_tenant: uuid.UUID | str | None) -> str | None:
    """A customer tenant id as the cache and the audit trail hold it: lower case, or None."""
    return str(customer_tenant).lower() if customer_tenant else None


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
    """The multi-statement path, after cached_token_issue() found no hit: return an access token
    from the partner's grant, or raise a BrokerError subclass. `found` holds grants_find()'s rows
    for this partner (and application, if one is named): the service API finds them in the same
    query as its partner-scope check. Refusals are found and audited here; a token is served from
    the cache (SQLite; or on PostgreSQL one filled since the hit statement) or refreshed, under
    the grant's row lock."""
    purpose = _purpose_clean(purpose)
    grant = _grant_pick(found, partner)
    customer = customer_clean(customer_tenant)
    refusal = _check_issuable(grant, audience) or _customer_refusal(grant, customer)
    if refusal is not None:
        raise refusal_record(
            refusal, grant=grant, actor=actor, audience=audience, customer=customer, purpose=purpose
        )

    failure: Failure | None = None
    issued = False
    with transaction.atomic():
        # FOR NO KEY UPDATE: it still excludes other refreshes and revokes of this grant, but not
        # the key-share lock that inserting an audit row referencing the grant takes, so hits for
        # the grant's other audiences do not wait behind a refresh.
        locked = (
            ConsentGrant.objects.select_for_update(of=("self",), no_key=True)
            .select_related("partner", "application")
            .get(pk=grant.pk)
        )
        if locked.generation != grant.generation or not locked.is_issuable:
            raise GrantRevoked("the grant changed while the token was requested; ask again")
        # Another caller may have filled the cache while this one waited for the lock.
        token = cached_token_get(grant=locked, audience=audience, customer=customer, now=timezone.now())
        refreshed = token is None
        TOKEN_CACHE.labels(result="miss" if refreshed else "hit").inc()
        if token is None:
            outcome = grant_redeem_locked(
                locked_grant=locked, audience=audience, customer=customer, actor=actor
            )
            if isinstance(outcome, IssuedTokens):
                token = AccessToken(
                    outcome.access_token, outcome.expires_at, audience, outcome.scope, customer
                )
                # Committed with the refresh token, before the lock is released: the next waiter finds it.
                cached_token_put(grant=locked, token=token, now=timezone.now())
            else:
                failure = outcome
        if token is not None:
            issued = _issued_record(
                locked_grant=locked, token=token, actor=actor, purpose=purpose, refreshed=refreshed
            )
    if failure is not None:
        error = _failure_error(failure)
        token_request_count(audience=audience, outcome=error.code)
        raise error
    if not issued:  # a check failed after the grant was read: the new refresh token is kept, no token leaves
        raise _refusal_now(
            locked, partner=partner, audience=audience, purpose=purpose, actor=actor, customer=customer
        )
    assert token is not None
    token_request_count(audience=audience, outcome=ISSUED)
    return token


def _refusal_now(
    grant: ConsentGrant, *, partner: Partner, audience: str, purpose: str, actor: Actor, customer: str | None
) -> BrokerError:
    """Audit and return the refusal a grant read now deserves (PostgreSQL, after the checked
    statement of a miss inserted nothing)."""
    found = grants_find(partner_tenant_id=partner.tenant_id, application=grant.application)
    refusal = (
        (_check_issuable(found[0], audience) or _customer_refusal(found[0], customer)) if found else None
    )
    if refusal is None:  # the condition passed again already (a kill switch engaged and released)
        refusal = GrantRevoked("the grant changed while the token was requested; ask again")
    return refusal_record(
        refusal, grant=grant, actor=actor, audience=audience, customer=customer, purpose=purpose
    )
