"""Service clients: the CPV's own services, authenticated by key, asking for access tokens.

A key is `samcp_<key_id>_<secret>`, the secret 256 random bits. Only the SHA-256 digest of the
whole key is stored and compared in constant time. A slow password hasher (PBKDF2, Argon2) would
protect low-entropy secrets against offline guessing; a 256-bit random secret cannot be guessed
either way, and a hasher costing ~100 ms per call would cap the API at a few requests per second
per core. The key id makes the lookup one indexed query, so no digest scan is needed.

The order of checks on every call: key (401) -> source address (403) -> rate limit (429) ->
partner scope (403) -> audience (403) -> unknown partner (404) -> the broker, which audits every
decision it makes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import datetime

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from partners.models import Partner
from tokens.audit import Actor, purpose_validate
from tokens.issuance.broker import (
    LAST_USED_RESOLUTION,
    AccessToken,
    BrokerError,
    InvalidRequest,
    NoGrant,
    access_token_issue,
    cached_token_issue,
    customer_clean,
    grants_find,
    refusal_record,
    statement_cursor,
)
from tokens.models import ServiceClient

KEY_PREFIX = "samcp"
RATE_WINDOW_SECONDS = 60


class Unauthenticated(BrokerError):
    code = "unauthenticated"


class AddressNotAllowed(BrokerError):
    code = "address_not_allowed"


class RateLimited(BrokerError):
    code = "rate_limited"


class AudienceNotAllowed(BrokerError):
    code = "audience_not_allowed"


class PartnerNotAllowed(BrokerError):
    code = "partner_not_allowed"


class UnknownPartner(BrokerError):
    code = "unknown_partner"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def service_client_key_assign(*, client: ServiceClient) -> str:
    """Give the (unsaved) client a new key and return the plaintext, which nothing keeps."""
    client.key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}_{client.key_id}_{secrets.token_urlsafe(32)}"
    client.key_digest = _digest(key)
    return key


@transaction.atomic
def service_client_create(
    *,
    name: str,
    audiences: Iterable[str],
    partner_tenant_ids: Iterable[uuid.UUID | str] = (),
    cidrs: Iterable[str] = (),
    rate_limit_per_minute: int = 600,
) -> tuple[ServiceClient, str]:
    """Create a client and return it with its plaintext key: the only time the key exists."""
    tenant_ids = {uuid.UUID(str(tenant_id)) for tenant_id in partner_tenant_ids}
    partners = list(Partner.objects.filter(tenant_id__in=tenant_ids))
    missing = tenant_ids - {partner.tenant_id for partner in partners}
    if missing:
        raise ValidationError(
            {"partners": f"Unknown partner tenants: {', '.join(map(str, sorted(missing)))}"}
        )
    client = ServiceClient(
        name=name,
        audiences=list(audiences),
        cidrs=list(cidrs),
        rate_limit_per_minute=rate_limit_per_minute,
    )
    key = service_client_key_assign(client=client)
    client.full_clean()
    client.save()
    client.partners.set(partners)
    return client, key


def service_client_authenticate(*, key: str, client_ip: str | None) -> ServiceClient:
    """The client owning this key, if it is enabled and the address is allowed; else a refusal.
    Unknown, malformed and disabled keys get the same answer so that none can be told apart."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    refused = Unauthenticated("the key is missing, unknown or disabled")
    if prefix != KEY_PREFIX or not key_id or not secret:
        raise refused
    client = _client_find(key_id)
    if client is None or not hmac.compare_digest(client.key_digest, _digest(key)) or client.disabled_at:
        raise refused
    if client.cidrs and not _address_allowed(client_ip, client.cidrs):
        raise AddressNotAllowed(f"requests from {client_ip} are not allowed for this key")
    _last_used_touch(client, timezone.now())
    return client


# The key lookup every API call makes, written out and prepared (tokens.issuance.broker.statement_cursor):
# through the ORM, composing and compiling it cost more CPU than PostgreSQL spent answering it.
_CLIENT_SQL = """
SELECT c.id, c.name, c.key_id, c.key_digest, c.audiences, c.cidrs, c.rate_limit_per_minute,
       c.disabled_at, c.last_used_at,
       EXISTS (SELECT 1 FROM tokens_serviceclient_partners s WHERE s.serviceclient_id = c.id) AS partner_scoped
FROM tokens_serviceclient c
WHERE c.key_id = %(key_id)s
"""
_CLIENT_FIELDS = [
    "id",
    "name",
    "key_id",
    "key_digest",
    "audiences",
    "cidrs",
    "rate_limit_per_minute",
    "disabled_at",
    "last_used_at",
]

_CLIENT_COLUMNS = {field.name: field for field in ServiceClient._meta.concrete_fields}


def _client_find(key_id: str) -> ServiceClient | None:
    """The client with this key id, with `partner_scoped` (whether its scope lists partners);
    its other fields (created_at) are deferred."""
    with statement_cursor() as cursor:
        cursor.execute(_CLIENT_SQL, {"key_id": key_id})
        row = cursor.fetchone()
    if row is None:
        return None
    # Each value through the converters Django's compiler would apply (JSON, and dates on SQLite).
    values = []
    for name, value in zip(_CLIENT_FIELDS, row, strict=False):
        column = _CLIENT_COLUMNS[name].get_col(ServiceClient._meta.db_table)
        converted = value
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            converted = converter(converted, column, connection)
        values.append(converted)
    client = ServiceClient.from_db(connection.alias, _CLIENT_FIELDS, values)
    client.partner_scoped = bool(row[-1])  # type: ignore[attr-defined]
    return client


def _address_allowed(client_ip: str | None, cidrs: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _last_used_touch(client: ServiceClient, now: datetime) -> None:
    # At most one UPDATE a minute per client: a busy client must not serialize on its own row.
    if client.last_used_at is None or now - client.last_used_at >= LAST_USED_RESOLUTION:
        ServiceClient.objects.filter(pk=client.pk).update(last_used_at=now)


def service_client_rate_limit_check(*, client: ServiceClient, now: float | None = None) -> None:
    """Count this call in the client's fixed one-minute window, shared by every process through
    the cache (Redis in production); refuse it once the window's budget is spent."""
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_SECONDS)
    count = _window_count(f"svc-rate:{client.pk}:{window}")
    if count > client.rate_limit_per_minute:
        retry_after = (window + 1) * RATE_WINDOW_SECONDS - int(now)
        raise RateLimited(
            f"more than {client.rate_limit_per_minute} requests a minute", retry_after=max(retry_after, 1)
        )


@functools.lru_cache(maxsize=8)
def _redis_client(pool: redis.ConnectionPool) -> redis.Redis:
    """One client per connection pool, for the process's life (a client holds no connection)."""
    return redis.Redis(connection_pool=pool)


def _window_count(key: str) -> int:
    """Count one call in the window's counter and return the count. The counter lives two windows,
    so it cannot expire between two calls of its own window."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # One round trip: INCR creates the counter at 1, EXPIRE NX gives it its lifetime once.
        # Django's incr() costs two (EXISTS, then INCRBY) and add() a third on a window's first call.
        redis_key = backend.make_and_validate_key(key)
        # RedisCache keeps its client in `_cache` and its pools there, with no public accessor
        # (Django 5.2); its get_client() builds a new redis.Redis on every call (~0.2 ms of CPU).
        pool = backend._cache._get_connection_pool(write=True)  # type: ignore[attr-defined]
        pipeline = _redis_client(pool).pipeline(transaction=True)
        pipeline.incr(redis_key)
        pipeline.expire(redis_key, 2 * RATE_WINDOW_SECONDS, nx=True)
        count, _ = pipeline.execute()
        return int(count)
    try:  # other caches (the demo's in-process one)
        return cache.incr(key)
    except ValueError:  # the window's first call, unless another process just created it
        return 1 if cache.add(key, 1, timeout=2 * RATE_WINDOW_SECONDS) else cache.incr(key)


def service_client_token_get(
    *,
    client: ServiceClient,
    partner_tenant_id: uuid.UUID,
    audience: str,
    purpose: str,
    actor: Actor,
    customer_tenant_id: uuid.UUID | None = None,
) -> AccessToken:
    """An access token for an authenticated client, within its scope. Refusals of scope are
    audited here; the broker audits its own."""
    try:
        purpose = purpose_validate(purpose)
    except ValueError as error:
        raise InvalidRequest(str(error)) from error
    if audience not in settings.SAM_AUDIENCES:
        raise InvalidRequest(f"unknown audience '{audience}'")

    customer = customer_clean(customer_tenant_id)
    scoped = getattr(client, "partner_scoped", True)
    if audience in client.audiences:
        # The cache hit: one statement checks the partner scope with everything the broker checks.
        hit = cached_token_issue(
            partner_tenant_id=partner_tenant_id,
            audience=audience,
            customer=customer,
            purpose=purpose,
            actor=actor,
            scope_client_id=client.pk if scoped else None,
        )
        if hit is not None:
            return hit

    def refused(error: BrokerError, partner: Partner | None = None) -> BrokerError:
        return refusal_record(
            error,
            actor=actor,
            partner=partner,
            audience=audience,
            customer=customer_tenant_id,
            purpose=purpose,
        )

    # No hit: the refusal, or a refresh. One query for the partner's grants (at most two), with the
    # partner, the kill-switch state and, for a partner-scoped client, the scope check. Only when
    # the partner has no grant is the partner looked up on its own, to tell the refusals apart.
    found = grants_find(partner_tenant_id=partner_tenant_id, scope_client_id=client.pk if scoped else None)
    partner: Partner | None
    if found:
        partner = found[0].partner
        in_scope = getattr(found[0], "in_scope", True)
    else:
        partners = Partner.objects.filter(tenant_id=partner_tenant_id)
        if scoped:
            partners = partners.annotate(
                in_scope=Exists(
                    ServiceClient.partners.through.objects.filter(
                        serviceclient=client.pk, partner=OuterRef("pk")
                    )
                )
            )
        partner = partners.first()
        in_scope = getattr(partner, "in_scope", True)
    # Scope first: a partner-scoped client learns nothing about partners outside its scope, not
    # even whether they exist, and its refusal there is recorded without that partner, so that it
    # never appears on the partner's activity page.
    if scoped and (partner is None or not in_scope):
        raise refused(PartnerNotAllowed("this key may not act for this partner"))
    if audience not in client.audiences:
        raise refused(AudienceNotAllowed(f"this key may not ask for '{audience}'"), partner)
    if partner is None:
        raise refused(UnknownPartner("no partner has this tenant id"))
    try:
        return access_token_issue(
            found=found,
            partner=partner,
            audience=audience,
            purpose=purpose,
            actor=actor,
            customer_tenant=customer,
        )
    except NoGrant as error:  # the broker audits the refusals it finds on a grant, not its absence
        raise refused(error, partner) from error
