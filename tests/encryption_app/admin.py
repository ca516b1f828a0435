from __future__ import annotations

from django.contrib import admin

from tests.encryption_app.models import Vault
from tokens.encryption.admin import EncryptedFieldsAdminMixin


@admin.register(Vault)
class VaultAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):
    # Names the encrypted fields everywhere a ModelAdmin can, to prove the mixin masks each place.
    list_display = ["name", "secret", "payload"]
    fields = ["name", "secret", "payload"]
    search_fields = ["name", "secret"]
