"""On PostgreSQL, a trigger makes the audit trail append-only: UPDATE and DELETE are rejected by
the database itself, whatever code or admin action tries them. (TRUNCATE stays possible for the
table owner, which test teardown needs; the application's role should not own the table.)"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION tokens_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tokens_auditevent_append_only
    BEFORE UPDATE OR DELETE ON tokens_auditevent
    FOR EACH ROW EXECUTE FUNCTION tokens_auditevent_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS tokens_auditevent_append_only ON tokens_auditevent;
DROP FUNCTION IF EXISTS tokens_auditevent_append_only();
"""


def _on_postgresql(sql: str):  # type: ignore[no-untyped-def]
    def run(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("tokens", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
