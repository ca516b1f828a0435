"""Encrypted model fields: the plaintext lives only in Python, the column holds a Tink ciphertext
bound by its associated data to ``<db_table>.<column>.<row id>``.

The row id is the value of `row_id_field` (the primary key by default), which must be unique and
get its value at construction (e.g. ``UUIDField(default=uuid.uuid4)``): the ciphertext is made in
pre_save, before INSERT, when an auto-increment id would not exist yet. A system check enforces it.

Reading is lazy: the database value becomes a `Ciphertext`, and the attribute decrypts it on first
access. Writing happens in pre_save, i.e. through Model.save() and QuerySet.bulk_create(); any other
path (QuerySet.update(), bulk_update()) that hands plaintext to the database is refused.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django import forms
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import StartsWith
from django.db.models.query_utils import DeferredAttribute

from tokens.encryption.ciphertext import Ciphertext, ciphertext_decrypt, ciphertext_encrypt, key_id_prefix
from tokens.encryption.errors import EncryptedFieldMisuse

# isnull reveals no more than the NULL already visible in the column; key_id reads the key id in the
# stored ciphertext (rotation and key retirement need it), never plaintext.
ALLOWED_LOOKUPS = frozenset({"isnull", "key_id"})


class _DecryptingAttribute(DeferredAttribute):
    """Decrypts on first access and keeps the plaintext on the instance, so that in-place changes
    (e.g. to a dict in an EncryptedJSONField) are saved like any other field's."""

    field: EncryptedField

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Ciphertext):
            value = self.field.decrypt_for(instance, value)
            instance.__dict__[self.field.attname] = value
        return value

    # A data descriptor, so that __get__ runs even when the instance __dict__ holds the value.
    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedField(models.TextField):
    """Base of the encrypted fields; subclasses say how a value becomes bytes and back."""

    descriptor_class = _DecryptingAttribute

    def __init__(self, *args: Any, row_id_field: str = "pk", **kwargs: Any) -> None:
        self.row_id_field = row_id_field
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.row_id_field != "pk":
            kwargs["row_id_field"] = self.row_id_field
        return name, path, args, kwargs

    def to_bytes(self, value: Any) -> bytes:
        raise NotImplementedError

    def from_bytes(self, data: bytes) -> Any:
        raise NotImplementedError

    # --- binding to the row -------------------------------------------------------------------
    def row_field(self) -> models.Field[Any, Any]:
        opts = self.model._meta
        return opts.pk if self.row_id_field == "pk" else opts.get_field(self.row_id_field)  # type: ignore[return-value]

    def associated_data(self, instance: models.Model) -> bytes:
        return self.associated_data_for(getattr(instance, self.row_field().attname))

    def associated_data_for(self, row_id: Any) -> bytes:
        """``<db_table>.<column>.<row id>``, the row id normalised (e.g. a UUID given as a string)."""
        row_field = self.row_field()
        row_id = row_field.to_python(row_id)
        if row_id is None:
            raise EncryptedFieldMisuse(f"{self._label()} cannot be encrypted before {row_field.name} is set.")
        return f"{self.model._meta.db_table}.{self.column}.{row_id}".encode()

    def encrypt_for(self, instance: models.Model, value: Any) -> Ciphertext:
        return ciphertext_encrypt(
            plaintext=self.to_bytes(value), associated_data=self.associated_data(instance)
        )

    def decrypt_for(self, instance: models.Model, ciphertext: Ciphertext) -> Any:
        data = ciphertext_decrypt(ciphertext=ciphertext, associated_data=self.associated_data(instance))
        return self.from_bytes(data)

    def ciphertext_of(self, instance: models.Model) -> Ciphertext | None:
        """The stored ciphertext if the value has not been decrypted (nor replaced) since loading."""
        value = instance.__dict__.get(self.attname)
        return value if isinstance(value, Ciphertext) else None

    # --- database round trip ------------------------------------------------------------------
    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname)
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            # Untouched since loading: keep it, once proven to still belong to this row (a changed
            # row id would otherwise store a ciphertext that can never be decrypted again).
            self.decrypt_for(model_instance, value)
            return value
        return self.encrypt_for(model_instance, value)

    def from_db_value(self, value: str | None, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        return None if value is None else Ciphertext(value)

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            return value.stored
        raise EncryptedFieldMisuse(
            f"{self._label()} received a plaintext value outside Model.save()/bulk_create(): "
            "QuerySet.update() and bulk_update() cannot bind a ciphertext to its row."
        )

    def value_to_string(self, obj: models.Model) -> str:
        # Serializers (dumpdata) get the ciphertext: a dump must never hold plaintext.
        value = obj.__dict__.get(self.attname)
        return value.stored if isinstance(value, Ciphertext) else self.encrypt_for(obj, value).stored

    # --- lookups ------------------------------------------------------------------------------
    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in ALLOWED_LOOKUPS:
            raise self._lookup_refused(lookup_name)
        return super().get_lookup(lookup_name)

    def get_transform(self, lookup_name: str) -> Any:
        raise self._lookup_refused(lookup_name)

    def _lookup_refused(self, lookup_name: str) -> EncryptedFieldMisuse:
        return EncryptedFieldMisuse(
            f"{self._label()} is encrypted: the database cannot compare its plaintext (lookup "
            f"'{lookup_name}'). Allowed lookups: {', '.join(sorted(ALLOWED_LOOKUPS))}."
        )

    def _label(self) -> str:
        return f"{self.model._meta.label}.{self.name}"

    # --- checks -------------------------------------------------------------------------------
    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *self._check_row_binding(), *self._check_not_unique()]

    def _check_row_binding(self) -> list[checks.CheckMessage]:
        try:
            row_field = self.row_field()
        except FieldDoesNotExist:
            return [
                checks.Error(
                    f"row_id_field '{self.row_id_field}' does not exist.", obj=self, id="encryption.E001"
                )
            ]
        if row_field.unique and row_field.has_default():
            return []
        return [
            checks.Error(
                f"The ciphertext is bound to its row by '{row_field.name}', which must be unique and get "
                "its value at construction, before the row is inserted.",
                hint="Use `id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)`, or "
                "pass row_id_field= the name of a unique UUIDField with default=uuid.uuid4.",
                obj=self,
                id="encryption.E001",
            )
        ]

    def _check_not_unique(self) -> list[checks.CheckMessage]:
        if not self.unique:
            return []
        return [
            checks.Error(
                "An encrypted field cannot be unique: its ciphertexts are randomized.",
                obj=self,
                id="encryption.E002",
            )
        ]


@EncryptedField.register_lookup
class KeyIdLookup(StartsWith):
    """``field__key_id=N``: the rows whose ciphertext was made with key N."""

    lookup_name = "key_id"

    def get_prep_lookup(self) -> str:
        return key_id_prefix(int(self.rhs))

    def get_rhs_op(self, connection: BaseDatabaseWrapper, rhs: str) -> str:
        # The backends know the SQL of "startswith", not of this lookup's name.
        return connection.operators["startswith"] % rhs


class EncryptedTextField(EncryptedField):
    def to_bytes(self, value: Any) -> bytes:
        return str(self.to_python(value)).encode("utf-8")

    def from_bytes(self, data: bytes) -> str:
        return data.decode("utf-8")


class EncryptedJSONField(EncryptedField):
    """Any JSON-serializable value; None is SQL NULL (JSON null cannot be stored distinctly)."""

    empty_strings_allowed: ClassVar[bool] = False  # type: ignore[misc]

    def to_bytes(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def from_bytes(self, data: bytes) -> Any:
        return json.loads(data)

    def to_python(self, value: Any) -> Any:
        return value

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        # Skip TextField.formfield, which would make a CharField with a Textarea.
        return models.Field.formfield(
            self, form_class=form_class or forms.JSONField, choices_form_class=choices_form_class, **kwargs
        )
