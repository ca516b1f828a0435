"""End to end with keys in Key Vault: a keyset wrapped by a Key Vault key and the application's
certificate key held in Key Vault, through the real Azure SDK, MSAL, a real Celery worker, PostgreSQL
and Redis, against the sandbox (Entra + Key Vault). Consent, the service API and renewal work; the
database dump, the processes' environment and the logs hold no application credential and no keyset
material (canaries); Key Vault down during a sweep leaves every grant as it was and raises one alert.

Skipped with a reason unless DATABASE_URL is PostgreSQL and the broker and cache are Redis.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from sandbox import demo
from tests.fixtures.database import pg_dump_text
from tests.fixtures.panel import consent_run, demo_application_upsert
from tests.fixtures.renewal import wait_for
from tests.fixtures.sandbox import RunningSandbox
from tokens.credentials.applications import credential_key_vault_certificate_add
from tokens.credentials.keyvault import keyvault_clients_clear
from tokens.encryption.keyset import keyset_cache_clear, keyset_file_write, keyset_get
from tokens.encryption.wrapped import keyset_wrap
from tokens.issuance.identity import msal_apps_clear
from tokens.models import ConsentGrant, OperatorAlert
from tokens.renewal.sweep import renewal_sweep
from tokens.service_api.service_clients import service_client_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _key_vault_env(sandbox: RunningSandbox, wrapped: Path) -> dict[str, str]:
    return {
        "FIELD_ENCRYPTION_KEYSET": "",
        "FIELD_ENCRYPTION_KEYSET_FILE": str(wrapped),
        "KEY_VAULT_TENANT_ID": demo.VENDOR_TENANT,
        "KEY_VAULT_CLIENT_ID": demo.HOST_CLIENT_ID,
        "KEY_VAULT_CLIENT_CERTIFICATE_PATH": str(demo.HOST_IDENTITY_PATH),
        "KEY_VAULT_AUTHORITY_HOST": sandbox.base_url,
        "KEY_VAULT_CA_BUNDLE": str(sandbox.ca_bundle),
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        "GRAPH_BASE_URL": sandbox.base_url,
        "PARTNER_CENTER_BASE_URL": sandbox.base_url,
    }


def _pem_body(path: Path) -> str:
    """The base64 lines of a PEM private key: what a leak of it would contain."""
    return "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))


def test_consent_api_and_renewal_with_keys_in_key_vault(worker_stack, tmp_path: Path) -> None:
    sandbox = RunningSandbox(worker_stack.sandbox)
    keyset_json = settings.FIELD_ENCRYPTION_KEYSET  # the test process's keyset, now wrapped
    wrapped = tmp_path / "keyset.wrapped.json"
    env = _key_vault_env(sandbox, wrapped)
    with override_settings(
        **{name: value for name, value in env.items() if not name.startswith(("FIELD_", "KEY_VAULT_VERIFY"))},
        KEY_VAULT_VERIFY_CHALLENGE_RESOURCE=False,
    ):
        keyvault_clients_clear()
        keyset_file_write(
            path=wrapped,
            keyset_json=keyset_wrap(
                keyset_json=keyset_json, key_id=f"{sandbox.base_url}/keys/keyset-wrapping"
            ),
            overwrite=False,
        )
        with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=str(wrapped)):
            keyset_cache_clear()
            msal_apps_clear()
            try:
                _scenario(worker_stack, sandbox, env, keyset_json)
            finally:
                keyset_cache_clear()
                keyvault_clients_clear()
                msal_apps_clear()


def _scenario(worker_stack, sandbox: RunningSandbox, env: dict[str, str], keyset_json: str) -> None:
    assert keyset_get().primary_key_id  # unwrapped by Key Vault in this process
    application = demo_application_upsert(sandbox)
    key_id = sandbox.control.keyvault()["keys"][demo.VAULT_APP_CERTIFICATE_KEY][-1]
    credential_key_vault_certificate_add(
        application=application, key_id=key_id, certificate_pem=demo.CERT_PATH.read_bytes()
    )

    # Consent, through the panel's pages and the sandbox's sign-in.
    client = Client()
    run = consent_run(client, sandbox)
    assert run.page.status_code == 200, run.page.content
    grant = ConsentGrant.objects.get()
    first_refresh_token = grant.refresh_token
    assert first_refresh_token

    # The service API: an access token for Graph, redeemed with a Key Vault-signed assertion.
    _, key = service_client_create(name="marketplace-orders", audiences=["graph"])
    response = client.post(
        "/api/v1/tokens",
        data=json.dumps({"partner_tenant_id": demo.CONTOSO, "audience": "graph", "purpose": "list users"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 200, response.content
    access_token = response.json()["access_token"]
    signs = sandbox.control.keyvault()["operations"]["keys/sign"]
    assert signs >= 2  # consent's redemption and the API's

    # Renewal by a real worker that unwraps the keyset and signs its assertions in Key Vault. (The
    # grant is made due by its own date: advancing the sandbox's clock would also age the host
    # identity's assertions past their expiry.)
    ConsentGrant.objects.filter(pk=grant.pk).update(last_refreshed_at=timezone.now() - timedelta(days=8))
    worker = worker_stack.worker(extra_env=env)
    renewal_sweep()
    wait_for(
        lambda: ConsentGrant.objects.filter(
            pk=grant.pk, last_refreshed_at__gt=timezone.now() - timedelta(minutes=5)
        ).exists(),
        timeout=60,
        message="the grant renewed by the worker",
    )
    assert sandbox.control.keyvault()["operations"]["keys/sign"] == signs + 1
    assert ConsentGrant.objects.get(pk=grant.pk).state == ConsentGrant.State.ACTIVE

    # Key Vault down during a sweep: the grant stays exactly as it was, one alert. (Due again, and the
    # first sweep's lease on it lifted.)
    ConsentGrant.objects.filter(pk=grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(days=8), renewal_enqueued_until=None
    )

    def snapshot() -> dict:
        # The sweep's lease (renewal_enqueued_until) is the sweep's bookkeeping, not the grant's state.
        return {
            k: v
            for k, v in ConsentGrant.objects.filter(pk=grant.pk).values().get().items()
            if k != "renewal_enqueued_until"
        }

    before = snapshot()
    worker_stack.sandbox.add_fault("http_503", endpoint="keyvault", count=1000)
    renewal_sweep()
    wait_for(lambda: OperatorAlert.objects.exists(), timeout=60, message="the operator alert")
    assert renewal_sweep().grant_ids == []  # the application's sweep is paused while its alert is open
    assert snapshot() == before
    alert = OperatorAlert.objects.get()
    assert alert.code == "KEY_VAULT_UNAVAILABLE" and alert.occurrences == 1
    worker_stack.sandbox.clear_faults()

    # Canaries: nothing of the application's credential, the keyset or a token in the dump, the
    # worker's environment or the logs.
    grant.refresh_from_db()
    keyset_secrets = [key["keyData"]["value"] for key in json.loads(keyset_json)["key"]]
    canaries = {
        "app private key": _pem_body(demo.KEY_PATH),
        "app client secret": demo.CLIENT_SECRET,
        **{f"keyset key {n}": value for n, value in enumerate(keyset_secrets)},
        "first refresh token": str(first_refresh_token),
        "current refresh token": str(grant.refresh_token),
        "access token": access_token,
    }
    dump = pg_dump_text()
    assert "tink1:" in dump and grant.partner.display_name in dump  # the dump holds the rows, as ciphertext
    environment = "\n".join(f"{name}={value}" for name, value in {**worker_stack.env, **env}.items())
    logs = "\n".join(p.read_text(errors="replace") for p in worker_stack.tmp.glob("*.log"))
    assert "renew" in logs.lower()  # the worker logged its work: the log is not empty
    for where, text in {"pg_dump": dump, "environment": environment, "worker logs": logs}.items():
        for name, canary in canaries.items():
            assert canary not in text, f"{name} found in {where}"
        # No PEM private key at all, whoever's.
        assert not re.search(r"PRIVATE KEY-----\s*\n[A-Za-z0-9+/]", text), f"a private key in {where}"
    worker.stop()
