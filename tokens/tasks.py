"""Celery tasks of the renewal engine: thin, ids only, the work is in tokens.renewal.sweep.

Messages carry a grant id and nothing else: no token, no secret, no model instance (JSON only).
"""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings


@shared_task(ignore_result=True)
def renewal_sweep_task() -> int:
    from tokens.renewal.probes import alert_probes_run
    from tokens.renewal.sweep import renewal_sweep

    # Probes first: a probe that succeeds closes its alert, and this same sweep then enqueues
    # every due grant of the application again.
    alert_probes_run()
    return len(renewal_sweep().grant_ids)


@shared_task(ignore_result=True)
def policy_expiry_sweep_task() -> int:
    from tokens.credentials.expiry import credential_expiry_check
    from tokens.renewal.sweep import policy_expiry_sweep

    credential_expiry_check()
    return policy_expiry_sweep().expired


@shared_task(ignore_result=True)
def audit_partitions_ensure_task() -> int:
    from tokens.audit_partitions import audit_partitions_ensure

    return len(audit_partitions_ensure())


# acks_late + reject_on_worker_lost: the message is acknowledged only after the task returns, and
# a worker killed mid-task (kill -9, OOM) puts it back on the queue instead of dropping it. That
# is safe only because grant_renew is idempotent: it re-checks under the row lock whether the grant
# is still due, so a redelivered task whose work did commit does nothing, and one whose work did not
# commit simply does it (the stored refresh token stays valid: Entra keeps a redeemed refresh token
# valid after issuing its successor).
# Retries are explicit, not `autoretry_for`: Celery's retry_backoff computes its own countdown and
# cannot see the provider's Retry-After, while grant_renew returns the delay it also recorded in
# next_attempt_at (capped exponential, never before Retry-After). A delay beyond
# RENEWAL_RETRY_MAX_SECONDS (a long Retry-After) is left to the sweep, which honours
# next_attempt_at, so no countdown outlives the broker's visibility timeout.
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=settings.RENEWAL_MAX_RETRIES,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def grant_renew_task(self: Task, grant_id: str) -> str:
    from tokens.renewal.sweep import Outcome, grant_renew

    result = grant_renew(grant_id=grant_id)
    if (
        result.outcome is Outcome.TRANSIENT
        and result.retry_in is not None
        and result.retry_in <= settings.RENEWAL_RETRY_MAX_SECONDS
        and self.request.retries < (self.max_retries or 0)
    ):
        raise self.retry(countdown=result.retry_in)
    return result.outcome.value
