"""The application's credential kept in Key Vault: a certificate whose key never leaves Key Vault (each
client assertion signed there, PS256 with x5t#S256) and a client secret read from Key Vault secrets,
through the real Azure SDK and the sandbox's Key Vault and Entra. Key Vault failing never touches a
partner's grant: one operator alert."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from sandbox import demo
from tests.fixtures.panel import consent_run, demo_application_upsert
from tests.fixtures.sandbox import RunningSandbox
from tokens.credentials.applications import (
    credential_key_vault_certificate_add,
    credential_key_vault_secret_add,
    credential_secret_add,
)
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import IssuedTokens, msal_apps_clear, refresh_token_redeem
from tokens.models import Application, ApplicationCredential, ConsentGrant, OperatorAlert
from tokens.renewal.sweep import grant_renew

pytestmark = pytest.mark.django_db


def _refresh_token(sandbox: RunningSandbox) -> str:
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([demo.GRAPH_SCOPE], redirect_uri=demo.REDIRECT_URI)
    return app.acquire_token_by_auth_code_flow(flow, sandbox.sign_in(flow["auth_uri"]))["refresh_token"]


def _key_id(sandbox: RunningSandbox) -> str:
    return sandbox.control.keyvault()["keys"][demo.VAULT_APP_CERTIFICATE_KEY][-1]


def key_vault_certificate_add(application: Application, sandbox: RunningSandbox) -> ApplicationCredential:
    return credential_key_vault_certificate_add(
        application=application, key_id=_key_id(sandbox), certificate_pem=demo.CERT_PATH.read_bytes()
    )


@pytest.fixture
def kv_application(panel_settings: RunningSandbox, keyvault_settings: RunningSandbox) -> Application:
    application = demo_application_upsert(panel_settings)
    key_vault_certificate_add(application, panel_settings)
    return application


def test_assertions_are_signed_in_key_vault_and_entra_accepts_them(kv_application, keyvault_settings) -> None:
    [credential] = kv_application.credentials.all()
    assert credential.secret == "" and "PRIVATE KEY" not in credential.certificate_pem

    for _ in range(2):
        outcome = refresh_token_redeem(
            application=kv_application,
            refresh_token=_refresh_token(keyvault_settings),
            audience="graph",
            tenant=demo.CONTOSO,
        )
        assert isinstance(outcome, IssuedTokens), outcome

    assertions = keyvault_settings.control.client_assertions()
    # (The host identity's own assertion, made by azure-identity for its Key Vault token, is another app's.)
    app_assertions = [
        (a["alg"], a["thumbprint_header"]) for a in assertions if a["client_id"] == demo.CLIENT_ID
    ]
    assert app_assertions == [("PS256", "x5t#S256")] * 2
    # One sign per token request: a fresh assertion (and jti) each time, none cached.
    assert keyvault_settings.control.keyvault()["operations"]["keys/sign"] == 2


def test_client_secret_read_from_key_vault(panel_settings, keyvault_settings) -> None:
    application = demo_application_upsert(panel_settings)
    secret_id = f"{keyvault_settings.base_url}/secrets/{demo.VAULT_APP_SECRET}"
    credential = credential_key_vault_secret_add(application=application, secret_id=secret_id)
    assert credential.secret == "" and credential.key_vault_id == secret_id

    outcome = refresh_token_redeem(
        application=application,
        refresh_token=_refresh_token(keyvault_settings),
        audience="graph",
        tenant=demo.CONTOSO,
    )
    assert isinstance(outcome, IssuedTokens), outcome
    assert keyvault_settings.control.keyvault()["operations"]["secrets/get"] == 1


def test_rotation_with_overlap_across_kinds(panel_settings, keyvault_settings) -> None:
    """Newest valid credential first; disabling it falls back to the older one, whatever the kinds."""
    application = demo_application_upsert(panel_settings)
    old = credential_secret_add(application=application, secret=demo.CLIENT_SECRET)
    ApplicationCredential.objects.filter(pk=old.pk).update(not_before=timezone.now() - timedelta(days=1))
    new = key_vault_certificate_add(application, keyvault_settings)
    ApplicationCredential.objects.filter(pk=new.pk).update(not_before=timezone.now() - timedelta(hours=1))

    def redeem() -> IssuedTokens | Failure:
        msal_apps_clear()
        return refresh_token_redeem(
            application=application,
            refresh_token=_refresh_token(keyvault_settings),
            audience="graph",
            tenant=demo.CONTOSO,
        )

    assert isinstance(redeem(), IssuedTokens)
    assert keyvault_settings.control.keyvault()["operations"]["keys/sign"] == 1
    ApplicationCredential.objects.filter(pk=new.pk).update(disabled_at=timezone.now())
    assert isinstance(redeem(), IssuedTokens)
    assert keyvault_settings.control.keyvault()["operations"]["keys/sign"] == 1  # the secret was used


@pytest.mark.parametrize(
    ("break_vault", "code"),
    [
        (lambda sandbox: sandbox.control.keyvault_unassign(demo.HOST_CLIENT_ID), "KEY_VAULT_REFUSED"),
        (
            lambda sandbox: sandbox.control.add_fault("http_503", endpoint="keyvault", count=100),
            "KEY_VAULT_UNAVAILABLE",
        ),
    ],
    ids=["role-removed", "vault-down"],
)
def test_key_vault_failing_during_renewal_touches_no_grant_and_raises_one_alert(
    break_vault, code, kv_application, keyvault_settings, client: Client
) -> None:
    run = consent_run(client, keyvault_settings)
    assert run.page.status_code == 200, run.page
    grant = ConsentGrant.objects.get()
    before = ConsentGrant.objects.filter(pk=grant.pk).values().get()
    break_vault(keyvault_settings)
    msal_apps_clear()

    for _ in range(3):
        outcome = grant_renew(grant_id=str(grant.pk), force=True)
        assert outcome.failure_code == code

    assert ConsentGrant.objects.filter(pk=grant.pk).values().get() == before  # untouched, state included
    alert = OperatorAlert.objects.get(resolved_at=None)
    assert (alert.code, alert.occurrences) == (code, 3)
    assert "sign" in alert.message and "/keys/sam-app-certificate/" in alert.message
    failure = refresh_token_redeem(
        application=kv_application, refresh_token="unused", audience="graph", tenant=demo.CONTOSO
    )
    assert isinstance(failure, Failure) and failure.failure_class is FailureClass.OPERATOR


def test_key_vault_down_during_an_api_call_is_a_503_to_retry(
    kv_application, keyvault_settings, client, api_call
):
    run = consent_run(client, keyvault_settings)
    assert run.page.status_code == 200, run.page
    before = ConsentGrant.objects.values().get()
    keyvault_settings.control.add_fault("drop", endpoint="keyvault", count=100)
    msal_apps_clear()

    body = {"partner_tenant_id": demo.CONTOSO, "audience": "graph", "purpose": "list users"}
    response = api_call(body)

    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "300"
    assert ConsentGrant.objects.values().get() == before
    assert OperatorAlert.objects.get().code == "KEY_VAULT_UNAVAILABLE"
    assert "Key Vault" not in response.content.decode()  # the caller is told to retry, not our internals


def test_sync_application_stores_key_vault_references_only(
    panel_settings, keyvault_settings, tmp_path
) -> None:
    key_id = _key_id(keyvault_settings)
    secret_id = f"{keyvault_settings.base_url}/secrets/{demo.VAULT_APP_SECRET}"
    with override_settings(
        SAM_APP_CLIENT_ID=demo.CLIENT_ID,
        SAM_APP_CLIENT_SECRET="",
        SAM_APP_CERTIFICATE_FILE="",
        SAM_APP_KEY_VAULT_SECRET_ID=secret_id,
        SAM_APP_KEY_VAULT_KEY_ID=key_id,
        SAM_APP_KEY_VAULT_CERTIFICATE_FILE=str(demo.CERT_PATH),
    ):
        call_command("sync_application", stdout=io.StringIO())
        call_command("sync_application", stdout=io.StringIO())  # idempotent
    kinds = dict(ApplicationCredential.objects.values_list("kind", "key_vault_id"))
    assert kinds == {
        ApplicationCredential.Kind.KEY_VAULT_SECRET: secret_id,
        ApplicationCredential.Kind.KEY_VAULT_CERTIFICATE: key_id,
    }
    assert {credential.secret for credential in ApplicationCredential.objects.all()} == {""}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SAM_APP_KEY_VAULT_KEY_ID": "https://v/keys/k/1"}, "go together"),
        ({"SAM_APP_KEY_VAULT_CERTIFICATE_FILE": str(demo.CERT_PATH)}, "SAM_APP_KEY_VAULT_KEY_ID"),
        (
            {
                "SAM_APP_KEY_VAULT_KEY_ID": "https://v/keys/k/1",
                "SAM_APP_KEY_VAULT_CERTIFICATE_FILE": "/nonexistent.pem",
            },
            "Could not store",
        ),
        (
            {
                "SAM_APP_KEY_VAULT_KEY_ID": "https://v/keys/k/1",
                "SAM_APP_KEY_VAULT_CERTIFICATE_FILE": str(demo.HOST_IDENTITY_PATH.parent / "__init__.py"),
            },
            "Could not store",
        ),
    ],
)
def test_sync_application_refuses_incomplete_key_vault_settings(panel_settings, overrides, message) -> None:
    base = {
        "SAM_APP_CLIENT_ID": demo.CLIENT_ID,
        "SAM_APP_CLIENT_SECRET": "",
        "SAM_APP_CERTIFICATE_FILE": "",
        "SAM_APP_KEY_VAULT_SECRET_ID": "",
        "SAM_APP_KEY_VAULT_KEY_ID": "",
        "SAM_APP_KEY_VAULT_CERTIFICATE_FILE": "",
    }
    with override_settings(**{**base, **overrides}), pytest.raises(CommandError, match=message):
        call_command("sync_application", stdout=io.StringIO())
    assert not ApplicationCredential.objects.exists()
