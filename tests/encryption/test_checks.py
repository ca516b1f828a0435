from __future__ import annotations

import uuid

from django.db import models
from django.test.utils import isolate_apps

from tokens.encryption.fields import EncryptedTextField


@isolate_apps("tests.encryption_app")
def test_a_field_bound_to_an_auto_increment_pk_is_refused() -> None:
    class AutoPk(models.Model):  # noqa: DJ008
        secret = EncryptedTextField()

        class Meta:
            app_label = "encryption_app"

    [error] = AutoPk._meta.get_field("secret").check()
    assert error.id == "encryption.E001"
    assert "uuid.uuid4" in (error.hint or "")


@isolate_apps("tests.encryption_app")
def test_a_unique_encrypted_field_is_refused() -> None:
    class Unique(models.Model):  # noqa: DJ008
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        secret = EncryptedTextField(unique=True)

        class Meta:
            app_label = "encryption_app"

    assert [error.id for error in Unique._meta.get_field("secret").check()] == ["encryption.E002"]
