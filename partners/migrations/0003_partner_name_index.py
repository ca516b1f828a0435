"""The index staff name searches use (partners/search.py). PostgreSQL only: text_pattern_ops is
PostgreSQL's, and the SQLite demo has too few partners to need an index."""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

INDEX = models.Index(
    django.contrib.postgres.indexes.OpClass(
        django.db.models.functions.text.Upper("display_name"), name="text_pattern_ops"
    ),
    name="partner_name_upper",
)


# Written out: Django 5.2 wraps an OpClass expression in parentheses PostgreSQL refuses. The
# expression is exactly what `display_name__istartswith` compiles to, so the planner matches it.
CREATE = 'CREATE INDEX "partner_name_upper" ON "partners_partner" (UPPER("display_name"::text) text_pattern_ops)'
DROP = 'DROP INDEX IF EXISTS "partner_name_upper"'


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("partners", "0002_partner_users")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="partner", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop)],
        ),
    ]
