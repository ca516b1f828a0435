"""The audit trail partitioned by month on PostgreSQL: the online migration keeps every row and id,
the append-only trigger holds on every partition, partitions are created ahead, and retention
drops only whole partitions past it, audited first."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tokens.audit_partitions import (
    DEFAULT_PARTITION,
    TABLE,
    audit_partitions_ensure,
    audit_partitions_list,
    month_next,
    month_start,
    partition_name,
)
from tokens.models import AuditEvent

pytestmark = pytest.mark.usefixtures("postgres_only")

BEFORE = ("tokens", "0004_merge_0003_renewal_notifications_0003_service_clients")
AFTER = ("tokens", "0005_auditevent_partitioned")


def _relkind(table: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return row[0] if row else None


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def _migrate_latest() -> None:
    """Every app's latest migration: the schema the rest of the suite expects (migrating back to
    BEFORE unapplied the tokens migrations that other branches of the graph added after it)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_existing_rows_into_a_partition_and_keeps_their_ids() -> None:
    _migrate(BEFORE)
    try:
        assert _relkind(TABLE) == "r"
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (at, actor_type, actor_id, action, outcome, audience, purpose, "
                "error_code, detail, request_id) SELECT now() - make_interval(days => g), 'system', "
                "'before-migration', 'expired', 'success', '', '', '', '', '' FROM generate_series(1, 50) g "
                "RETURNING id"
            )
            before = sorted(row[0] for row in cursor.fetchall())
        _migrate(AFTER)
        assert _relkind(TABLE) == "p"
        assert _relkind(f"{TABLE}_legacy") == "r"
        moved = sorted(AuditEvent.objects.filter(actor_id="before-migration").values_list("id", flat=True))
        assert moved == before
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}_legacy WHERE actor_id = 'before-migration'")
            assert cursor.fetchone()[0] == 50
        # The sequence goes on where the old identity stopped: no id is handed out twice.
        new = AuditEvent.objects.create(actor_type="system", actor_id="after", action="expired")
        assert new.id > before[-1]
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(actor_id="before-migration").update(detail="changed")
        # And back, for the reverse migration's sake (development only), then forward again.
        _migrate(BEFORE)
        assert _relkind(TABLE) == "r"
        assert AuditEvent.objects.filter(actor_id="before-migration").count() == 50
    finally:
        _migrate_latest()
        audit_partitions_ensure()
    assert _relkind(TABLE) == "p"


@pytest.mark.django_db
def test_partitions_are_created_ahead_idempotently() -> None:
    now = timezone.now()
    legacy_end = next(p.upper for p in audit_partitions_list() if p.name == f"{TABLE}_legacy")
    assert legacy_end is not None and legacy_end > now  # the legacy partition ends after the migration
    audit_partitions_ensure(now=now, months_ahead=6)
    names = {p.name for p in audit_partitions_list()}
    month, months = month_next(month_start(now)), list[str]()
    while len(months) < 6:
        months.append(partition_name(month))
        month = month_next(month)
    assert set(months) <= names and DEFAULT_PARTITION in names
    assert partition_name(month) not in names  # seven months ahead: not yet
    assert audit_partitions_ensure(now=now, months_ahead=6) == []


@pytest.mark.django_db
def test_the_append_only_trigger_holds_on_every_partition() -> None:
    partitions = audit_partitions_list()
    assert len(partitions) >= 3  # legacy, monthly ones, default
    for partition in partitions:
        at = (partition.upper or timezone.now() + timedelta(days=3650)) - timedelta(seconds=1)
        event = AuditEvent.objects.create(
            actor_type="system", actor_id=partition.name, action="expired", at=at
        )
        for statement in (
            f"UPDATE {partition.name} SET detail = 'changed' WHERE id = %s",
            f"DELETE FROM {partition.name} WHERE id = %s",
            f"UPDATE {TABLE} SET detail = 'changed' WHERE id = %s",
            f"DELETE FROM {TABLE} WHERE id = %s",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement, [event.id])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {partition.name} WHERE id = %s", [event.id])
            assert cursor.fetchone()[0] == 1, f"the row of {partition.name} landed elsewhere"


@pytest.fixture
def past_partitions(db, settings) -> list[str]:
    """Three monthly partitions around the retention cutoff: the month before the cutoff's month
    (all its events past retention), the cutoff's month and the one after (not all past). The
    legacy partition (empty in tests) is dropped first to make room below it; the test's
    transaction restores it."""
    settings.AUDIT_RETENTION_DAYS = 400
    cutoff = timezone.now() - timedelta(days=400)
    cutoff_month = month_start(cutoff)
    before = month_start(cutoff_month - timedelta(days=1))
    months = [before, cutoff_month, month_next(cutoff_month)]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {TABLE}_legacy")
        cursor.execute(f"DROP TABLE {TABLE}_legacy")
        for start in months:
            cursor.execute(
                f"CREATE TABLE {partition_name(start)} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                [start, month_next(start)],
            )
    for start in months:
        AuditEvent.objects.create(
            actor_type="system", actor_id="old", action="expired", at=start + timedelta(days=2)
        )
    with connection.cursor() as cursor:
        # Run the deferred foreign-key checks of these inserts now, as their commit would: a table
        # with pending trigger events cannot be dropped in the same transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return [partition_name(start) for start in months]


def test_retention_drops_only_partitions_past_it_and_audits_first(past_partitions) -> None:
    old, cutoff_month, after = past_partitions
    out = StringIO()
    call_command("audit_retention", "--dry-run", stdout=out)
    assert f"would drop {old}" in out.getvalue() and "1 partition(s) would drop" in out.getvalue()
    assert _relkind(old) == "r"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.AUDIT_PARTITION_DROPPED).exists()

    out = StringIO()
    call_command("audit_retention", stdout=out)
    assert f"dropped {old}" in out.getvalue()
    assert _relkind(old) is None
    assert _relkind(cutoff_month) == "r" and _relkind(after) == "r"
    assert AuditEvent.objects.filter(actor_id="old").count() == 2
    (event,) = AuditEvent.objects.filter(action=AuditEvent.Action.AUDIT_PARTITION_DROPPED)
    assert event.actor_id == "manage.py audit_retention" and old in event.detail
    # Nothing else is past retention now: a second run drops nothing.
    out = StringIO()
    call_command("audit_retention", stdout=out)
    assert "0 partition(s) dropped" in out.getvalue()
