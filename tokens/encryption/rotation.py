"""Key rotation: re-encrypt every encrypted column, of every installed model, to the primary key.

Safe while the application serves traffic: each batch is one transaction that locks its rows
(SELECT ... FOR UPDATE SKIP LOCKED where the database has it, so rows being written are left for a
later run instead of waited on), and each row is written by an UPDATE conditional on its old
ciphertext, so a value changed concurrently is never overwritten by a stale re-encryption.
Re-runnable: only rows whose key id is not the primary's are selected, and every batch commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connections, models, router, transaction

from tokens.encryption.ciphertext import Ciphertext, ciphertext_decrypt, ciphertext_encrypt
from tokens.encryption.errors import DecryptionFailed
from tokens.encryption.fields import EncryptedField
from tokens.encryption.keyset import keyset_get

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncryptedColumn:
    model: type[models.Model]
    field: EncryptedField

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"


@dataclass
class ColumnRotationReport:
    column: str
    already_current: int = 0  # on the primary key before the run
    scanned: int = 0  # selected as being on an old key
    reencrypted: int = 0
    skipped: int = 0  # changed or deleted concurrently: the writer already used the primary key
    failed: int = 0  # did not decrypt (wrong keyset, tampered or moved ciphertext); logged by pk
    remaining: int = 0  # on an old key after the run (locked, failed, or written by an old process)


def encrypted_columns_list() -> list[EncryptedColumn]:
    """Every encrypted column of every installed model, each once (proxies share their table,
    inherited fields are listed on the model whose table holds them)."""
    return [
        EncryptedColumn(model=model, field=field)
        for model in apps.get_models()
        if not model._meta.proxy
        for field in model._meta.local_concrete_fields
        if isinstance(field, EncryptedField)
    ]


def encryption_keys_rotate(
    *, batch_size: int = 500, progress: Callable[[ColumnRotationReport], None] | None = None
) -> list[ColumnRotationReport]:
    primary_key_id = keyset_get().primary_key_id
    return [
        _column_rotate(column=column, primary_key_id=primary_key_id, batch_size=batch_size, progress=progress)
        for column in encrypted_columns_list()
    ]


def encryption_key_usage_count(*, key_id: int) -> dict[str, int]:
    """Rows per encrypted column whose ciphertext was made with `key_id` (columns with none omitted)."""
    usage = {}
    for column in encrypted_columns_list():
        manager = column.model._base_manager.db_manager(router.db_for_read(column.model))
        count = manager.filter(**{f"{column.field.name}__key_id": key_id}).count()
        if count:
            usage[column.label] = count
    return usage


def _column_rotate(
    *,
    column: EncryptedColumn,
    primary_key_id: int,
    batch_size: int,
    progress: Callable[[ColumnRotationReport], None] | None,
) -> ColumnRotationReport:
    using = router.db_for_write(column.model)
    field, name = column.field, column.field.name
    rows = column.model._base_manager.db_manager(using)
    stale = rows.filter(**{f"{name}__isnull": False}).exclude(**{f"{name}__key_id": primary_key_id})
    report = ColumnRotationReport(
        column=column.label, already_current=rows.filter(**{f"{name}__key_id": primary_key_id}).count()
    )
    last_pk = None
    while True:
        # Walk the table by pk pages (an index scan) and pick the stale rows inside each page:
        # filtering on the ciphertext first would re-read every remaining row for each batch.
        page = rows.order_by("pk") if last_pk is None else rows.filter(pk__gt=last_pk).order_by("pk")
        pks = list(page.values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        with transaction.atomic(using=using):
            batch: list[tuple[object, object, Ciphertext]] = list(
                stale.filter(pk__gte=pks[0], pk__lte=pks[-1])
                .select_for_update(skip_locked=True)
                .values_list("pk", field.row_field().attname, name)
            )
            reencrypted: dict[Any, tuple[Ciphertext, Ciphertext]] = {}
            for pk, row_id, old in batch:
                associated_data = field.associated_data_for(row_id)
                try:
                    plaintext = ciphertext_decrypt(ciphertext=old, associated_data=associated_data)
                except DecryptionFailed as exc:
                    report.failed += 1
                    logger.warning("rotation: %s pk=%s not re-encrypted: %s", column.label, pk, exc)
                    continue
                new = ciphertext_encrypt(plaintext=plaintext, associated_data=associated_data)
                reencrypted[pk] = (old, new)
            updated = _rows_update(
                model=column.model,
                using=using,
                field=field,
                reencrypted=reencrypted,
                page_bounds=(pks[0], pks[-1]),
            )
            report.scanned += len(batch)
            report.reencrypted += updated
            report.skipped += len(reencrypted) - updated
        last_pk = pks[-1]
        if progress is not None:
            progress(report)
    report.remaining = stale.count()
    return report


def _rows_update(
    *,
    model: type[models.Model],
    using: str,
    field: EncryptedField,
    reencrypted: dict[Any, tuple[Ciphertext, Ciphertext]],
    page_bounds: tuple[Any, Any],
) -> int:
    """Write a batch in one statement (one per row costs a round trip each, and the ORM's Case/When
    grows quadratically), each row only where it still holds the ciphertext that was re-encrypted.
    Returns the number of rows written. UPDATE ... FROM (VALUES ...) runs on PostgreSQL and SQLite
    3.33+; VALUES columns are column1..3 on both."""
    if not reencrypted:
        return 0
    connection = connections[using]
    quote = connection.ops.quote_name
    pk_field = model._meta.pk
    assert pk_field is not None
    table, pk_column, column = quote(model._meta.db_table), quote(pk_field.column), quote(field.column)
    row_sql = f"(CAST(%s AS {pk_field.db_type(connection)}), %s, %s)"
    params: list[Any] = []
    for pk, (old, new) in reencrypted.items():
        params += [pk_field.get_db_prep_value(pk, connection), old.stored, new.stored]
    sql = (
        f"UPDATE {table} SET {column} = v.column3 "  # noqa: S608 (quoted names, values are parameters)
        f"FROM (VALUES {', '.join([row_sql] * len(reencrypted))}) AS v "
        f"WHERE {table}.{pk_column} = v.column1 AND {table}.{column} = v.column2"
        # The page bounds let the planner use the pk index; without them it may scan the whole table
        # for every batch to build a hash join.
        f" AND {table}.{pk_column} BETWEEN %s AND %s"
    )
    params += [pk_field.get_db_prep_value(pk, connection) for pk in page_bounds]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
