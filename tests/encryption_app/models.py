"""Test-only models: one bound to its UUID primary key, one to a UUID column beside an integer pk."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models

from tokens.encryption.fields import EncryptedJSONField, EncryptedTextField


class Vault(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    secret = EncryptedTextField(blank=True)
    payload = EncryptedJSONField(null=True, blank=True)

    # Declared because the type checker runs with the production settings, where this app is absent.
    objects: ClassVar[models.Manager[Vault]] = models.Manager()

    def __str__(self) -> str:
        return self.name


class OtherVault(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    secret = EncryptedTextField(blank=True, row_id_field="public_id")

    objects: ClassVar[models.Manager[OtherVault]] = models.Manager()

    def __str__(self) -> str:
        return str(self.public_id)
