"""Admin masking: any ModelAdmin that mixes in EncryptedFieldsAdminMixin shows encrypted fields as a
mask (with the key id of the stored ciphertext) and never decrypts them.

Encrypted fields are excluded from the admin's forms, so their plaintext is never loaded into a
form, an initial value or a widget; they are written by services, not typed in by staff. Wherever a
ModelAdmin names an encrypted field (fields, fieldsets, readonly_fields, list_display), the name is
swapped for a masked read-only display; search fields and list filters on them are dropped, since
the database cannot compare ciphertexts with plaintext.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from tokens.encryption.fields import EncryptedField

MASK = "••••••••"

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Any]
else:
    _Base = object


def masked_name(field_name: str) -> str:
    return f"{field_name}_masked"


def _masked_display(field: EncryptedField) -> Callable[[models.Model], str | None]:
    @admin.display(description=field.verbose_name)
    def display(obj: models.Model) -> str | None:
        if obj.__dict__.get(field.attname) is None:
            return None
        ciphertext = field.ciphertext_of(obj)
        return f"{MASK} (key {ciphertext.key_id})" if ciphertext is not None else MASK

    return display


class EncryptedFieldsAdminMixin(_Base):
    def __init__(self, model: type[models.Model], admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        self.encrypted_fields = {
            field.name: field for field in model._meta.concrete_fields if isinstance(field, EncryptedField)
        }
        for name, field in self.encrypted_fields.items():
            setattr(self, masked_name(name), _masked_display(field))

    def _mask(self, names: Sequence[Any]) -> list[Any]:
        masked: list[Any] = []
        for name in names:
            if isinstance(name, list | tuple):
                masked.append(tuple(self._mask(name)))
            else:
                masked.append(masked_name(name) if name in self.encrypted_fields else name)
        return masked

    def _is_encrypted_path(self, name: Any) -> bool:
        return isinstance(name, str) and name.lstrip("^=@").split("__")[0] in self.encrypted_fields

    def get_exclude(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return [*(super().get_exclude(request, obj) or ()), *self.encrypted_fields]

    def get_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return list(dict.fromkeys(self._mask(super().get_fields(request, obj))))

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return [
            (title, {**options, "fields": self._mask(options["fields"])})
            for title, options in super().get_fieldsets(request, obj)
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        declared = self._mask(super().get_readonly_fields(request, obj))
        masks = [masked_name(name) for name in self.encrypted_fields]
        return list(dict.fromkeys([*declared, *masks]))

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._mask(super().get_list_display(request))

    def get_list_display_links(self, request: HttpRequest, list_display: Any) -> Any:
        links = super().get_list_display_links(request, list_display)
        return None if links is None else self._mask(links)

    def get_search_fields(self, request: HttpRequest) -> Any:
        return [name for name in super().get_search_fields(request) if not self._is_encrypted_path(name)]

    def get_list_filter(self, request: HttpRequest) -> Any:
        return [name for name in super().get_list_filter(request) if not self._is_encrypted_path(name)]
