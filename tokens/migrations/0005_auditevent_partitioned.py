"""On PostgreSQL, the audit trail becomes a table partitioned by month of `at`, online: no row is
copied and writers wait only for one short transaction of catalog changes.

1. Outside any transaction, while the panel serves: build a unique index on (id, at) CONCURRENTLY
   (a partitioned table's primary key must hold the partition key), and add a CHECK that every row
   is older than the first day of next month, NOT VALID then VALIDATE (validation reads the table
   under a lock that lets inserts go on).
2. In one short transaction: the old table is renamed tokens_auditevent_legacy; a partitioned
   tokens_auditevent takes its name, columns, sequence, indexes (same names), foreign keys and the
   append-only trigger; the old table is attached as the partition of everything before next
   month. PostgreSQL trusts the validated CHECK instead of scanning, and adopts the old table's
   matching indexes and foreign keys instead of building new ones.

The same migration replaces the trail's indexes by the ones its lists need (every one ending with
at, id: see AuditEvent.Meta): on PostgreSQL each new index is built CONCURRENTLY on the old table
in step 1 and adopted by the partitioned table in step 2 (no build under lock); indexes no longer
wanted are dropped in step 2. On SQLite the indexes are simply dropped and created.

Monthly partitions from next month on, and a default one, are created by
tokens.audit_partitions.audit_partitions_ensure (after every migrate, and daily by beat).

Django keeps `id` as the model's primary key: ids still come from one sequence, so they stay
unique although the database's key is (id, at). The reverse migration copies the rows back into a
plain table (not online; for development only). SQLite (the demo) is left as it is.
"""

from datetime import UTC, datetime

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TABLE = "tokens_auditevent"
LEGACY = "tokens_auditevent_legacy"
LEGACY_KEY_INDEX = "tokens_auditevent_legacy_id_at"
LEGACY_RANGE = "tokens_auditevent_legacy_range"
TRIGGER = """
CREATE TRIGGER tokens_auditevent_append_only
    BEFORE UPDATE OR DELETE ON tokens_auditevent
    FOR EACH ROW EXECUTE FUNCTION tokens_auditevent_append_only();
"""


def _boundary() -> datetime:
    """The first day of next month (UTC): rows written while the migration runs fall before it."""
    now = datetime.now(UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def _is_partitioned(cursor) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
    return cursor.fetchone()[0] == "p"


def _desired_indexes(model, schema_editor) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Index name -> CREATE INDEX statement, for the model as this migration leaves it."""
    desired = {}
    for field in model._meta.local_fields:
        if field.db_index and not field.unique and not field.primary_key:
            name = schema_editor._create_index_name(model._meta.db_table, [field.column], suffix="")
            desired[name] = str(schema_editor._create_index_sql(model, fields=[field]))
    for index in model._meta.indexes:
        desired[index.name] = str(index.create_sql(model, schema_editor))
    return desired


def _existing_indexes(connection) -> set[str]:  # type: ignore[no-untyped-def]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return {
        name
        for name, info in constraints.items()
        if info["index"] and not info["primary_key"] and not info["unique"]
    }


def _new_name(name: str) -> str:
    return f"{name[:50]}_new"


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    desired = _desired_indexes(apps.get_model("tokens", "AuditEvent"), schema_editor)
    existing = _existing_indexes(connection)
    if connection.vendor != "postgresql":
        for name in sorted(existing - set(desired)):
            schema_editor.execute(f'DROP INDEX "{name}"')
        for name in sorted(set(desired) - existing):
            schema_editor.execute(desired[name])
        return
    boundary = _boundary()
    with connection.cursor() as cursor:
        if _is_partitioned(cursor):
            return
        # 1. Online preparation (autocommit: this migration is not atomic).
        cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {LEGACY_KEY_INDEX} ON {TABLE} (id, at)")
        for name in sorted(set(desired) - existing):
            # Same definition under a temporary name, on the old table, without blocking writes.
            sql = desired[name].replace(f'"{name}"', f'"{_new_name(name)}"', 1)
            cursor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
        cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {LEGACY_RANGE}")
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {LEGACY_RANGE} CHECK (at < %s) NOT VALID", [boundary])
        cursor.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {LEGACY_RANGE}")
    # 2. The swap.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        _swap(cursor, boundary, desired)


def _swap(cursor, boundary: datetime, desired: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    cursor.execute("SET LOCAL lock_timeout = '10s'")
    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(
        "SELECT indexrelid::regclass::text, indisprimary FROM pg_index "
        "WHERE indrelid = %s::regclass AND indexrelid <> %s::regclass",
        [TABLE, LEGACY_KEY_INDEX],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        [TABLE],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"SELECT pg_get_serial_sequence('{TABLE}', 'id')")
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
    last_value, is_called = cursor.fetchone()

    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {LEGACY}")
    cursor.execute(f"DROP TRIGGER tokens_auditevent_append_only ON {LEGACY}")
    cursor.execute(f"ALTER TABLE {LEGACY} ALTER COLUMN id DROP IDENTITY")  # drops its sequence
    new_names = {_new_name(name) for name in desired}
    for name, primary in indexes:
        if primary:
            cursor.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {name}")
        elif name in desired:
            cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:50]}_legacy")  # kept, adopted below
        elif name not in new_names:
            cursor.execute(f"DROP INDEX {name}")  # no longer wanted
    cursor.execute(f"ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY}_pkey PRIMARY KEY USING INDEX {LEGACY_KEY_INDEX}")

    cursor.execute(f"CREATE TABLE {TABLE} (LIKE {LEGACY}) PARTITION BY RANGE (at)")
    cursor.execute(f"CREATE SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id")
    cursor.execute(f"SELECT setval('{TABLE}_id_seq', %s, %s)", [last_value, is_called])
    cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')")
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, at)")
    for sql in desired.values():
        cursor.execute(sql)  # on the partitioned table, which has no partition yet: instant
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    # PostgreSQL adopts the old table's matching indexes and foreign keys, and trusts the
    # validated CHECK for the bound: no scan, no build.
    cursor.execute(
        f"ALTER TABLE {TABLE} ATTACH PARTITION {LEGACY} FOR VALUES FROM (MINVALUE) TO (%s)", [boundary]
    )
    cursor.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {LEGACY_RANGE}")  # the partition bound says it now
    cursor.execute(TRIGGER)  # on the parent: PostgreSQL clones it onto every partition


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if not _is_partitioned(cursor):
            return
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_partitioned")
        cursor.execute(f"ALTER SEQUENCE {TABLE}_id_seq RENAME TO {TABLE}_partitioned_id_seq")
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
            [f"{TABLE}_partitioned"],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:40]}_old")
    model = apps.get_model("tokens", "AuditEvent")
    schema_editor.create_model(model)
    with connection.cursor() as cursor:
        columns = ", ".join(field.column for field in model._meta.local_fields)
        cursor.execute(
            f"INSERT INTO {TABLE} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {TABLE}_partitioned"
        )
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), (SELECT last_value FROM {TABLE}_partitioned_id_seq))")
        cursor.execute(f"DROP TABLE {TABLE}_partitioned CASCADE")
        cursor.execute(TRIGGER)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("tokens", "0004_merge_0003_renewal_notifications_0003_service_clients")]

    operations = [
        # The model's new indexes, for Django's state; the database gets them from forwards().
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="auditevent", name="audit_partner_recent"),
                migrations.AlterField(
                    model_name="auditevent",
                    name="application",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tokens.application",
                    ),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="at",
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="partner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="partners.partner",
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["-at", "-id"], name="audit_recent"),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        fields=["partner", "-at", "-id"], include=("outcome",), name="audit_partner_at_id"
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        fields=["partner", "action", "-at", "-id"], include=("outcome",), name="audit_partner_action"
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["action", "-at", "-id"], name="audit_action_recent"),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["application", "-at", "-id"], name="audit_application_recent"),
                ),
            ],
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("consented", "Consented"),
                    ("renewed", "Renewed (consent again)"),
                    ("token_issued", "Access token issued"),
                    ("token_denied", "Access token refused"),
                    ("refreshed", "Refresh token redeemed"),
                    ("refresh_failed", "Refresh failed"),
                    ("state_changed", "State changed"),
                    ("revoked", "Revoked"),
                    ("expired", "Expired"),
                    ("consent_failed", "Consent failed"),
                    ("kill_switch_engaged", "Issuance suspended"),
                    ("kill_switch_released", "Issuance resumed"),
                    ("partner_suspended", "Partner suspended"),
                    ("partner_resumed", "Partner resumed"),
                    ("operator_alert", "Operator alerted"),
                    ("audit_partition_dropped", "Audit events past retention dropped"),
                ],
                max_length=32,
            ),
        ),
    ]
