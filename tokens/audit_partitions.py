"""The audit trail's monthly partitions on PostgreSQL: created ahead, dropped whole after retention.

`tokens_auditevent` is a table partitioned by range of `at` (migration 0005): one partition per
calendar month (UTC) named `tokens_auditevent_pYYYYMM`, the rows from before the migration in
`tokens_auditevent_legacy` (everything up to the month after the migration ran), and a default
partition that catches a row no monthly partition covers, so that issuance never fails because the
beat fell behind. The append-only trigger is declared on the parent and PostgreSQL clones it onto
every partition, present and future.

Retention never deletes rows (the trigger forbids it): it detaches and drops whole partitions whose
every row is older than AUDIT_RETENTION_DAYS, after writing an audit event saying so. On SQLite
(the demo) there are no partitions and both functions do nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tokens.audit import Actor, audit_record
from tokens.models import AuditEvent

logger = logging.getLogger(__name__)

TABLE = AuditEvent._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
_UPPER_BOUND = re.compile(r"TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    upper: datetime | None  # None for the default partition (no bound)


@dataclass
class RetentionReport:
    cutoff: datetime
    dropped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def month_next(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"{TABLE}_p{start:%Y%m}"


def audit_partitions_list() -> list[Partition]:
    """The partitions and their upper bounds, from PostgreSQL's catalog."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [TABLE],
        )
        rows = cursor.fetchall()
    partitions = []
    for name, bound in rows:
        match = _UPPER_BOUND.search(bound)
        upper = datetime.fromisoformat(match.group(1)).astimezone(UTC) if match else None
        partitions.append(Partition(name, upper))
    return partitions


def audit_is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def audit_partitions_ensure(*, now: datetime | None = None, months_ahead: int | None = None) -> list[str]:
    """Create the monthly partitions from the current month to `months_ahead` months ahead, and the
    default partition, where missing. Idempotent; run daily by beat and after every migrate."""
    if not audit_is_partitioned():
        return []
    now = now or timezone.now()
    months_ahead = settings.AUDIT_PARTITIONS_AHEAD_MONTHS if months_ahead is None else months_ahead
    # Months below the newest bound are covered already (by the legacy partition or a monthly one).
    floor = max((p.upper for p in audit_partitions_list() if p.upper is not None), default=month_start(now))
    created = []
    start = month_start(now)
    for _ in range(months_ahead + 1):
        end = month_next(start)
        if start >= floor:
            name = partition_name(start)
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                        [start, end],
                    )
                created.append(name)
            except DatabaseError:
                # The default partition already holds rows of this month (beat was stopped for
                # months): they cannot be moved (append-only), so the month stays in the default
                # partition. Issuance is unaffected; retention cannot drop that month.
                logger.exception(
                    "audit partition %s not created; its month stays in %s", name, DEFAULT_PARTITION
                )
        start = end
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT")
    return created


def audit_retention_apply(
    *, actor: Actor, now: datetime | None = None, dry_run: bool = False
) -> RetentionReport:
    """Detach and drop every partition whose rows are all older than AUDIT_RETENTION_DAYS. The
    audit event naming the partition commits before the partition goes."""
    now = now or timezone.now()
    report = RetentionReport(cutoff=now - timedelta(days=settings.AUDIT_RETENTION_DAYS))
    if not audit_is_partitioned():
        return report
    for partition in audit_partitions_list():
        if partition.upper is None or partition.upper > report.cutoff:
            report.kept.append(partition.name)
            continue
        report.dropped.append(partition.name)
        if dry_run:
            continue
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=AuditEvent.Action.AUDIT_PARTITION_DROPPED,
                detail=(
                    f"{partition.name}: events before {partition.upper:%Y-%m-%d} dropped "
                    f"(retention {settings.AUDIT_RETENTION_DAYS} days)"
                ),
            )
        with transaction.atomic(), connection.cursor() as cursor:
            # DETACH takes the parent's ACCESS EXCLUSIVE lock for a moment (CONCURRENTLY is not
            # possible while a default partition exists): wait for it briefly rather than queue
            # every audit insert behind a long reader; the command can simply be run again.
            cursor.execute("SET LOCAL lock_timeout = '5s'")
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
            cursor.execute(f"DROP TABLE {partition.name}")
    return report
