"""The deploy check on database roles: the audit trigger holds only against a role that does not
own the audit table (an owner may disable the trigger, and TRUNCATE is never stopped by a row
trigger). Migrations run as an owner role; the panel connects as an application role that may
only SELECT and INSERT audit rows (docs/operations.md, "Database roles")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError, connection

AUDIT_TABLE = "tokens_auditevent"
HINT = "Connect as the application role and run migrations as the owner role: docs/operations.md, 'Database roles'."


def audit_table_privileges() -> tuple[bool, list[str]] | None:
    """Whether the connected role owns the audit table, and which of UPDATE, DELETE, TRUNCATE it
    holds on it; None when the table does not exist yet."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_userbyid(c.relowner) = current_user, "
            "has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'), "
            "has_table_privilege(c.oid, 'TRUNCATE') "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [AUDIT_TABLE],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    owns, *held = row
    return bool(owns), [name for name, has in zip(("UPDATE", "DELETE", "TRUNCATE"), held, strict=True) if has]


# `check --deploy` only: it reads the database (the role it connects as), which static checks do not.
@register(Tags.security, deploy=True)
def check_audit_table_role(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if connection.vendor != "postgresql":
        return []
    try:
        found = audit_table_privileges()
    except DatabaseError as error:
        return [
            Warning(f"Could not read the audit table's owner: {error}", hint=HINT, id="controlpanel.W030")
        ]
    if found is None:
        return []
    owns, held = found
    if owns:
        return [
            Warning(
                f"The application's database role owns {AUDIT_TABLE}: it can disable the append-only "
                "trigger, and UPDATE, DELETE and TRUNCATE the audit trail.",
                hint=HINT,
                id="controlpanel.W031",
            )
        ]
    if held:
        return [
            Warning(
                f"The application's database role may {', '.join(held)} on {AUDIT_TABLE}; it needs "
                "SELECT and INSERT only.",
                hint=HINT,
                id="controlpanel.W032",
            )
        ]
    return []
