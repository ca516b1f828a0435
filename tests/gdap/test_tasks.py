"""The GDAP inventory's Celery side: beat runs its sweep with the renewal sweep; the sweep enqueues
partner ids only, after its commit, once per lease, only for partners that can be read and are due;
the refresh task retries what is transient (never before Retry-After) and nothing else; and a real
worker reads the sandbox's Graph, picks up a termination, and e-mails a relationship ending soon once
across sweeps."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from gdap import tasks
from gdap.inventory import InventoryRefresh, Outcome, gdap_inventory_refresh_now, gdap_inventory_sweep
from gdap.models import Inventory, Relationship
from partners.models import AgentRole, Partner
from sandbox import demo
from sandbox.bulk import BulkPartner, bulk_refresh_tokens
from tests.fixtures.renewal import WorkerStack, sandbox_application, wait_for
from tests.fixtures.staff import grant_make, partner_make
from tokens.audit import Actor
from tokens.issuance.vault import ConsentRecord, grant_record_consent
from tokens.models import Application, ConsentGrant

ADELE_OID = "c88b68ce-d2bf-4333-b44b-9fb78ab71490"


def test_beat_runs_the_sweep_with_the_renewal_sweep() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["gdap-inventory-sweep"]
    assert entry["task"] == "gdap.tasks.gdap_inventory_sweep_task"
    assert entry["schedule"] == settings.CELERY_BEAT_SCHEDULE["renewal-sweep"]["schedule"]
    refresh = tasks.gdap_inventory_refresh_task
    assert (
        refresh.acks_late
        and refresh.reject_on_worker_lost
        and refresh.max_retries == settings.RENEWAL_MAX_RETRIES
    )
    assert refresh.soft_time_limit is not None and refresh.time_limit is not None
    assert refresh.soft_time_limit < refresh.time_limit


@pytest.fixture
def partners(app_row: Application) -> dict[str, Partner]:
    """Partners of every kind the sweep must tell apart."""
    made = {}
    kinds: list[tuple[str, str, dict[str, Any]]] = [
        ("due", demo.CONTOSO, {}),
        ("sales", demo.FABRIKAM, {"consented_by_role": AgentRole.SALES_AGENT}),
        ("revoked", demo.WOODGROVE, {"state": ConsentGrant.State.REVOKED, "refresh_token": None}),
        ("suspended", demo.ADATUM, {}),
    ]
    for name, tenant, fields in kinds:
        partner = partner_make(tenant_id=tenant, name=name)
        grant_make(partner=partner, application=app_row, **fields)
        made[name] = partner
    Partner.objects.filter(pk=made["suspended"].pk).update(status=Partner.Status.SUSPENDED)
    return made


@pytest.mark.django_db
def test_the_sweep_enqueues_due_partner_ids_after_commit_once(
    partners, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    sent: list[tuple] = []
    monkeypatch.setattr(tasks.gdap_inventory_refresh_task, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = gdap_inventory_sweep()
    assert report.partner_ids == [str(partners["due"].pk)] and sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [(str(partners["due"].pk), None)]
    json.dumps(sent)  # ids only: JSON-serialisable, no model, no token
    lease = Inventory.objects.get(partner=partners["due"]).enqueued_until
    assert lease is not None and lease > timezone.now() + timedelta(seconds=settings.GDAP_LEASE_SECONDS - 60)
    # Leased: a second sweep enqueues nothing; lapsed and never attempted: again.
    assert gdap_inventory_sweep().partner_ids == []
    Inventory.objects.update(enqueued_until=timezone.now() - timedelta(seconds=1))
    assert gdap_inventory_sweep().partner_ids == [str(partners["due"].pk)]
    # Attempted recently: not due until GDAP_INVENTORY_REFRESH_MINUTES have passed.
    Inventory.objects.update(enqueued_until=None, attempted_at=timezone.now())
    assert gdap_inventory_sweep().partner_ids == []
    later = timezone.now() + timedelta(minutes=settings.GDAP_INVENTORY_REFRESH_MINUTES + 1)
    assert gdap_inventory_sweep(now=later).partner_ids == [str(partners["due"].pk)]


@pytest.mark.django_db
def test_staff_refresh_now_passes_the_staff_id(
    partners, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    sent: list[tuple] = []
    monkeypatch.setattr(tasks.gdap_inventory_refresh_task, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        assert gdap_inventory_refresh_now(partner_ids=[str(partners["due"].pk)], requested_by="7") == 1
    assert sent == [(str(partners["due"].pk), "7")]


@pytest.mark.parametrize(
    "outcome, retry_after, retried",
    [
        (Outcome.TRANSIENT, None, True),
        (Outcome.TRANSIENT, 120, True),
        (Outcome.FAILED, None, False),
        (Outcome.READ, None, False),
    ],
)
def test_the_task_retries_transient_failures_only(monkeypatch, outcome, retry_after, retried) -> None:
    import gdap.inventory

    calls: list[Actor] = []
    retries: list[int] = []

    def refresh(*, partner_id: str, actor: Actor) -> InventoryRefresh:
        calls.append(actor)
        return InventoryRefresh(partner_id, outcome, retry_after=retry_after)

    def retry(countdown: int) -> Exception:
        retries.append(countdown)
        return RuntimeError("retry")

    monkeypatch.setattr(gdap.inventory, "gdap_inventory_refresh", refresh)
    monkeypatch.setattr(tasks.gdap_inventory_refresh_task, "retry", retry)
    if retried:
        with pytest.raises(RuntimeError, match="retry"):
            tasks.gdap_inventory_refresh_task.run("p-1", "42")
        assert retries[0] >= (retry_after or 1) and retries[0] <= max(
            retry_after or 0, settings.RENEWAL_RETRY_MAX_SECONDS
        )
    else:
        assert tasks.gdap_inventory_refresh_task.run("p-1") == outcome.value and retries == []
    assert calls[0] == (Actor.staff("42") if retried else gdap.inventory.INVENTORY_ACTOR)


# --- a real worker -------------------------------------------------------------------------------


def _contoso_grant(stack: WorkerStack) -> ConsentGrant:
    application = sandbox_application(stack.sandbox.base_url)
    adele = BulkPartner(demo.CONTOSO, "Contoso Partner", demo.CONTOSO_DOMAIN, demo.ADMIN_AGENT, ADELE_OID)
    [refresh_token] = bulk_refresh_tokens(stack.sandbox, [adele], threads=1)
    return grant_record_consent(
        application=application,
        consent=ConsentRecord(
            tenant_id=demo.CONTOSO,
            tenant_name="Contoso Partner",
            tenant_domain=demo.CONTOSO_DOMAIN,
            consented_by_oid=ADELE_OID,
            consented_by_upn=demo.ADMIN_AGENT,
            consented_by_role=AgentRole.ADMIN_AGENT,
            mfa=True,
            audiences=["partner_center", "graph"],
            refresh_token=refresh_token,
        ),
        actor=Actor.system("test"),
    )


def _mails(mail_dir: Path) -> list[str]:
    return [p.read_text() for p in sorted(mail_dir.glob("*.log"))]


def test_a_worker_reads_the_inventory_picks_up_a_termination_and_warns_once(
    worker_stack: WorkerStack,
) -> None:
    grant = _contoso_grant(worker_stack)
    worker_stack.worker(concurrency=2)
    tasks.gdap_inventory_sweep_task.delay()  # the worker sweeps: Contoso is due, its read is enqueued
    wait_for(
        lambda: Inventory.objects.filter(partner=grant.partner, read_at__isnull=False).exists(),
        timeout=60,
        message="the inventory was not read",
    )
    assert Relationship.objects.filter(partner=grant.partner).count() == demo.GDAP_CONTOSO_COUNT
    # Two more sweeps: the relationships ending soon are e-mailed once each, not twice.
    for _ in range(2):
        tasks.gdap_inventory_sweep_task.delay()
        wait_for(lambda: len(_mails(worker_stack.mail_dir)) >= 2, timeout=60, message="no warning e-mail")
    # Every sweep done (acks_late: a message leaves `unacked` only when its task has returned).
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    wait_for(
        lambda: broker.llen("celery") == 0 and broker.hlen("unacked") == 0,
        timeout=30,
        message="the sweeps did not finish",
    )
    mails = _mails(worker_stack.mail_dir)
    assert len(mails) == 2 and any("Northwind Traders ends in 24 days" in m for m in mails)
    # Terminated in Partner Center mid-way; staff ask for a read; one transient Graph failure first.
    worker_stack.sandbox.gdap_terminate(demo.GDAP_ADATUM)
    worker_stack.sandbox.add_fault("http_503", endpoint="resource", count=1)
    assert gdap_inventory_refresh_now(partner_ids=[str(grant.partner_id)], requested_by="1") == 1
    wait_for(
        lambda: Relationship.objects.filter(display_name=demo.GDAP_ADATUM, status="terminated").exists(),
        timeout=60,
        message="the termination was not picked up (after the retry of the 503)",
    )
    inventory = Inventory.objects.get(partner=grant.partner)
    assert inventory.error_code == "" and inventory.enqueued_until is None
