from __future__ import annotations

import pytest
from django.test import Client

from tests.encryption_app.models import Vault
from tokens.encryption.admin import MASK
from tokens.encryption.keyset import keyset_get

pytestmark = pytest.mark.django_db

CANARY = "canary-refresh-token-3f9a"
JSON_CANARY = "canary-json-77c1"


@pytest.fixture
def vault() -> Vault:
    return Vault.objects.create(name="contoso", secret=CANARY, payload={"token": JSON_CANARY})


def _assert_masked(html: str) -> None:
    assert CANARY not in html
    assert JSON_CANARY not in html
    assert f"{MASK} (key {keyset_get().primary_key_id})" in html


def test_the_changelist_masks_encrypted_columns(staff_client: Client, vault: Vault) -> None:
    response = staff_client.get("/admin/encryption_app/vault/")
    assert response.status_code == 200
    assert "contoso" in response.text
    _assert_masked(response.text)


def test_searching_never_queries_encrypted_columns(staff_client: Client, vault: Vault) -> None:
    response = staff_client.get("/admin/encryption_app/vault/", {"q": "contoso"})
    assert response.status_code == 200
    _assert_masked(response.text)


def test_the_change_form_masks_encrypted_fields_and_has_no_input_for_them(
    staff_client: Client, vault: Vault
) -> None:
    response = staff_client.get(f"/admin/encryption_app/vault/{vault.pk}/change/")
    assert response.status_code == 200
    _assert_masked(response.text)
    assert 'name="secret"' not in response.text
    assert 'name="payload"' not in response.text
    assert set(response.context["adminform"].form.fields) == {"name"}


def test_saving_the_change_form_keeps_the_encrypted_values(staff_client: Client, vault: Vault) -> None:
    response = staff_client.post(f"/admin/encryption_app/vault/{vault.pk}/change/", {"name": "fabrikam"})
    assert response.status_code == 302
    saved = Vault.objects.get(pk=vault.pk)
    assert (saved.name, saved.secret, saved.payload) == ("fabrikam", CANARY, {"token": JSON_CANARY})


def test_the_add_form_has_no_input_for_encrypted_fields(staff_client: Client) -> None:
    response = staff_client.get("/admin/encryption_app/vault/add/")
    assert response.status_code == 200
    assert 'name="secret"' not in response.text
