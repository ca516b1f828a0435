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

import hashlib
import hmac
import ipaddress
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from partners.models import Partner
from tokens.audit import Actor, purpose_validate
from tokens.broker import (
    LAST_USED_RESOLUTION,
    AccessToken,
    BrokerError,
    InvalidRequest,
    NoGrant,
    access_token_issue,
    grants_find,
    refusal_record,
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
    client = (
        ServiceClient.objects.annotate(
            partner_scoped=Exists(ServiceClient.partners.through.objects.filter(serviceclient=OuterRef("pk")))
        )
        .filter(key_id=key_id)
        .first()
    )
    if client is None or not hmac.compare_digest(client.key_digest, _digest(key)) or client.disabled_at:
        raise refused
    if client.cidrs and not _address_allowed(client_ip, client.cidrs):
        raise AddressNotAllowed(f"requests from {client_ip} are not allowed for this key")
    _last_used_touch(client, timezone.now())
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
    key = f"svc-rate:{client.pk}:{window}"
    try:
        count = cache.incr(key)
    except ValueError:  # the window's first call, unless another process just created it
        # The key lives past its window, so it cannot expire between the two steps of incr.
        count = 1 if cache.add(key, 1, timeout=2 * RATE_WINDOW_SECONDS) else cache.incr(key)
    if count > client.rate_limit_per_minute:
        retry_after = (window + 1) * RATE_WINDOW_SECONDS - int(now)
        raise RateLimited(
            f"more than {client.rate_limit_per_minute} requests a minute", retry_after=max(retry_after, 1)
        )


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

    def refused(error: BrokerError, partner: Partner | None = None) -> BrokerError:
        return refusal_record(
            error,
            actor=actor,
            partner=partner,
            audience=audience,
            customer=customer_tenant_id,
            purpose=purpose,
        )

    # One query on the way to a token: the partner's grants (at most two), with the partner, the
    # kill-switch state and, for a partner-scoped client, the scope check. Only when the partner
    # has no grant is the partner looked up on its own, to tell the refusals apart.
    scoped = getattr(client, "partner_scoped", True)
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
            customer_tenant=str(customer_tenant_id) if customer_tenant_id else None,
        )
    except NoGrant as error:  # the broker audits the refusals it finds on a grant, not its absence
        raise refused(error, partner) from error
