"""Celery tasks of the GDAP inventory: thin, ids only, the work is in gdap.inventory.

Messages carry a partner id (and, for staff's "refresh now", the staff user's id): no token, no
secret, no model instance (JSON only).
"""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

# Reading a partner's relationships is one request per page and one per active relationship (its
# access assignments): a large partner takes minutes, far longer than a renewal.
SOFT_TIME_LIMIT = 600
TIME_LIMIT = 660


@shared_task(ignore_result=True)
def gdap_inventory_sweep_task() -> int:
    from gdap.inventory import gdap_inventory_sweep

    return len(gdap_inventory_sweep().partner_ids)


# acks_late + reject_on_worker_lost, as grant_renew_task: a killed worker's task is delivered again,
# which is safe because a refresh is idempotent (it reads everything and writes only a complete read,
# serialised on the inventory row). Transient failures (Graph 429/5xx, timeouts, the identity provider
# unavailable) are retried with capped exponential backoff, never before Graph's Retry-After; what no
# retry can fix (403 without the permission, a malformed page) is recorded and waits for the next sweep.
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=settings.RENEWAL_MAX_RETRIES,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
)
def gdap_inventory_refresh_task(self: Task, partner_id: str, requested_by: str | None = None) -> str:
    from gdap.inventory import INVENTORY_ACTOR, Outcome, gdap_inventory_refresh
    from tokens.audit import Actor
    from tokens.renewal.sweep import retry_delay

    actor = Actor.staff(requested_by) if requested_by else INVENTORY_ACTOR
    result = gdap_inventory_refresh(partner_id=partner_id, actor=actor)
    if result.outcome is Outcome.TRANSIENT and self.request.retries < (self.max_retries or 0):
        delay = retry_delay(failure_count=self.request.retries + 1, retry_after=result.retry_after)
        if delay <= settings.RENEWAL_RETRY_MAX_SECONDS:
            raise self.retry(countdown=delay)
    return result.outcome.value
