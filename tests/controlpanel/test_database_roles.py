"""Least-privilege database roles: the application role, granted exactly what docs/operations.md
says, may read and append audit events but not UPDATE, DELETE, TRUNCATE them nor disable the
trigger; the deploy check warns when the application's role owns the audit table.

Roles are cluster-wide: the test creates them with unique names, inside its transaction, and drops
them before it ends."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper

from controlpanel.database_roles import check_audit_table_role
from tokens.audit import Actor, audit_record
from tokens.models import AuditEvent

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def documented_grants(app_role: str) -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    block = re.search(r"<!-- grants\.sql:.*?-->\s*```sql\n(.*?)```", text, flags=re.DOTALL)
    assert block, "docs/operations.md lost its grants block"
    return block.group(1).replace("samcp_app", app_role)


@pytest.fixture
def app_role(postgres_only: None) -> Iterator[str]:
    name = f"samcp_app_test_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{name}" NOLOGIN')
        cursor.execute(documented_grants(name))
    yield name
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute(f'DROP OWNED BY "{name}"')
        cursor.execute(f'DROP ROLE "{name}"')


@contextmanager
def acting_as(role: str) -> Iterator[CursorWrapper]:
    """Statements as `role`, in a savepoint. A role set in a released savepoint would last until the
    end of the test's transaction, so it is reset on success; on an error, rolling the savepoint
    back restores the role."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role}"')
        yield cursor
        cursor.execute("RESET ROLE")


def as_role(role: str, sql: str) -> None:
    with acting_as(role) as cursor:
        cursor.execute(sql)


def test_the_application_role_appends_but_cannot_alter_the_audit_trail(app_role: str) -> None:
    with acting_as(app_role):
        audit_record(actor=Actor.system("roles-test"), action=AuditEvent.Action.OPERATOR_ALERT, detail="x")
        assert AuditEvent.objects.filter(actor_id="roles-test").count() == 1
    for statement in (
        "UPDATE tokens_auditevent SET detail = 'rewritten'",
        "DELETE FROM tokens_auditevent",
        "TRUNCATE tokens_auditevent",
        "ALTER TABLE tokens_auditevent DISABLE TRIGGER tokens_auditevent_append_only",
        "DROP TRIGGER tokens_auditevent_append_only ON tokens_auditevent",
    ):
        with pytest.raises(DatabaseError) as refused:
            as_role(app_role, statement)
        # Refused for want of privilege or ownership, not (only) by the trigger.
        message = str(refused.value)
        assert "permission denied" in message or "must be owner" in message, (statement, message)
    assert AuditEvent.objects.filter(actor_id="roles-test", detail="x").count() == 1
    # Other tables stay writable for it.
    as_role(app_role, "UPDATE tokens_killswitch SET reason = reason")


def test_the_deploy_check_warns_when_the_application_role_owns_the_audit_table(app_role: str) -> None:
    with acting_as(app_role):
        assert check_audit_table_role(None) == []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'tokens_auditevent'")
        (owner,) = cursor.fetchone()
        cursor.execute(f'ALTER TABLE tokens_auditevent OWNER TO "{app_role}"')
        with acting_as(app_role):
            assert [message.id for message in check_audit_table_role(None)] == ["controlpanel.W031"]
        cursor.execute(f'ALTER TABLE tokens_auditevent OWNER TO "{owner}"')
    # The test database's own role (a superuser owning everything) is what the README warns about.
    assert [message.id for message in check_audit_table_role(None)] == ["controlpanel.W031"]
