from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from controlpanel.checks import (
    check_encryption_keyset,
    check_production_key_vault,
    check_production_refuses_sandbox,
    check_production_safety,
)
from sandbox import demo

UNSAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DEBUG": True,
    "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}},
    "CELERY_BROKER_URL": "filesystem://",
    "IDENTITY_AUTHORITY_HOST": "http://login.example",
    "SECRET_KEY": "insecure-demo-secret-key-change-me",
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    "SAM_APP_CLIENT_ID": "",
}

SAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DEBUG": False,
    "DATABASES": {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}},
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "IDENTITY_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "SECRET_KEY": "k" * 64,
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache"}},
    "SAM_APP_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
}


def test_an_unsafe_production_configuration_is_refused_with_one_error_per_problem() -> None:
    with override_settings(**UNSAFE_PRODUCTION):
        errors = check_production_safety(None)
    ids = sorted(str(e.id) for e in errors if isinstance(e, Error))
    assert ids == [f"controlpanel.E00{n}" for n in range(1, 8)]
    assert all(e.hint for e in errors)


def test_a_safe_production_configuration_passes() -> None:
    with override_settings(**SAFE_PRODUCTION):
        assert check_production_safety(None) == []


def test_the_demo_defaults_are_accepted_outside_production() -> None:
    with override_settings(**{**UNSAFE_PRODUCTION, "ENVIRONMENT": "demo"}):
        assert check_production_safety(None) == []


def test_a_missing_keyset_is_an_error_everywhere() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=""):
        [error] = check_encryption_keyset(None)
    assert error.id == "controlpanel.E010"
    assert "generate_keyset" in (error.hint or "")


# --- production refuses the sandbox's settings ----------------------------------------------------

MICROSOFT_PRODUCTION = {
    "ENVIRONMENT": "production",
    "IDENTITY_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "GRAPH_BASE_URL": "https://graph.microsoft.com",
    "PARTNER_CENTER_BASE_URL": "https://api.partnercenter.microsoft.com",
    "IDENTITY_ALLOWED_HOSTS": [],
    "IDENTITY_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "SAM_APP_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "SAM_APP_CLIENT_SECRET": "a-secret-of-our-own-app-registration",
    "SAM_APP_CERTIFICATE_FILE": "",
    "SITE_URL": "https://panel.example.com",
    "SAM_APP_REDIRECT_URI": "https://panel.example.com/onboarding/callback/",
    "DASHBOARD_SIGNIN_REDIRECT_URI": "https://panel.example.com/dashboard/signin/callback/",
    "SAM_APP_ADMIN_CONSENT_REDIRECT_URI": "https://panel.example.com/onboarding/admin-consent/callback/",
}


SANDBOX_SETTINGS = {
    "IDENTITY_AUTHORITY_HOST": "https://127.0.0.1:8443",
    "GRAPH_BASE_URL": "https://127.0.0.1:8443",
    "PARTNER_CENTER_BASE_URL": "https://127.0.0.1:8443",
    "IDENTITY_CA_BUNDLE": settings.SANDBOX_CA_BUNDLE,
    "SAM_APP_CLIENT_ID": demo.CLIENT_ID,
    "SAM_APP_CLIENT_SECRET": demo.CLIENT_SECRET,
    "SAM_APP_CERTIFICATE_FILE": str(demo.CERT_PATH),
    "SITE_URL": "http://127.0.0.1:8000",
    "SAM_APP_REDIRECT_URI": "http://127.0.0.1:8000/onboarding/callback/",
    "DASHBOARD_SIGNIN_REDIRECT_URI": "http://127.0.0.1:8000/dashboard/signin/callback/",
    "SAM_APP_ADMIN_CONSENT_REDIRECT_URI": "http://127.0.0.1:8000/onboarding/admin-consent/callback/",
}


def _sandbox_errors(**overrides: object) -> list[CheckMessage]:
    with override_settings(**{**MICROSOFT_PRODUCTION, **overrides}):
        return check_production_refuses_sandbox(None)


def test_microsoft_endpoints_and_our_own_application_pass() -> None:
    assert _sandbox_errors() == []


def test_the_sandbox_settings_are_accepted_outside_production() -> None:
    assert _sandbox_errors(ENVIRONMENT="demo", **SANDBOX_SETTINGS) == []


@pytest.mark.parametrize(
    ("overrides", "check_id", "message", "hint"),
    [
        (
            {"IDENTITY_AUTHORITY_HOST": "https://127.0.0.1:8443"},
            "controlpanel.E011",
            "IDENTITY_AUTHORITY_HOST points at a loopback address (127.0.0.1): the sandbox, not Microsoft.",
            "Set IDENTITY_AUTHORITY_HOST=https://login.microsoftonline.com.",
        ),
        (
            {"IDENTITY_AUTHORITY_HOST": "https://localhost:8443"},
            "controlpanel.E011",
            "IDENTITY_AUTHORITY_HOST points at a loopback address (localhost): the sandbox, not Microsoft.",
            "Set IDENTITY_AUTHORITY_HOST=https://login.microsoftonline.com.",
        ),
        (
            {"IDENTITY_AUTHORITY_HOST": "https://[::1]:8443"},
            "controlpanel.E011",
            "IDENTITY_AUTHORITY_HOST points at a loopback address (::1): the sandbox, not Microsoft.",
            "Set IDENTITY_AUTHORITY_HOST=https://login.microsoftonline.com.",
        ),
        (
            {"IDENTITY_AUTHORITY_HOST": "https://login.example.com"},
            "controlpanel.E011",
            "IDENTITY_AUTHORITY_HOST is not an HTTPS URL on one of Microsoft's hosts (login.example.com).",
            "Set IDENTITY_AUTHORITY_HOST=https://login.microsoftonline.com; for another Microsoft cloud or "
            "an egress proxy, name its host in IDENTITY_ALLOWED_HOSTS.",
        ),
        (
            {"GRAPH_BASE_URL": "https://127.0.0.1:8443"},
            "controlpanel.E012",
            "GRAPH_BASE_URL points at a loopback address (127.0.0.1): the sandbox, not Microsoft.",
            "Set GRAPH_BASE_URL=https://graph.microsoft.com.",
        ),
        (
            {"GRAPH_BASE_URL": "http://graph.microsoft.com"},
            "controlpanel.E012",
            "GRAPH_BASE_URL is not an HTTPS URL on one of Microsoft's hosts (graph.microsoft.com).",
            "Set GRAPH_BASE_URL=https://graph.microsoft.com; for another Microsoft cloud or an egress "
            "proxy, name its host in IDENTITY_ALLOWED_HOSTS.",
        ),
        (
            {"PARTNER_CENTER_BASE_URL": "https://127.0.0.1:8443"},
            "controlpanel.E013",
            "PARTNER_CENTER_BASE_URL points at a loopback address (127.0.0.1): the sandbox, not Microsoft.",
            "Set PARTNER_CENTER_BASE_URL=https://api.partnercenter.microsoft.com.",
        ),
        (
            {"PARTNER_CENTER_BASE_URL": "https://partnercenter.example.com"},
            "controlpanel.E013",
            "PARTNER_CENTER_BASE_URL is not an HTTPS URL on one of Microsoft's hosts "
            "(partnercenter.example.com).",
            "Set PARTNER_CENTER_BASE_URL=https://api.partnercenter.microsoft.com; for another Microsoft "
            "cloud or an egress proxy, name its host in IDENTITY_ALLOWED_HOSTS.",
        ),
        (
            {"IDENTITY_CA_BUNDLE": settings.SANDBOX_CA_BUNDLE},
            "controlpanel.E014",
            "IDENTITY_CA_BUNDLE is the sandbox's CA: it would trust the sandbox, not Microsoft.",
            "Set IDENTITY_CA_BUNDLE to the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt.",
        ),
        (
            {"IDENTITY_CA_BUNDLE": "var/sandbox/other-ca.pem"},
            "controlpanel.E014",
            "IDENTITY_CA_BUNDLE is the sandbox's CA: it would trust the sandbox, not Microsoft.",
            "Set IDENTITY_CA_BUNDLE to the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt.",
        ),
        (
            {"SAM_APP_CLIENT_ID": demo.CLIENT_ID.upper()},
            "controlpanel.E015",
            "SAM_APP_CLIENT_ID is the sandbox's demo application.",
            "Set SAM_APP_CLIENT_ID to the client id of your own app registration in Entra ID.",
        ),
        (
            {"SAM_APP_CLIENT_SECRET": demo.CLIENT_SECRET},
            "controlpanel.E016",
            "SAM_APP_CLIENT_SECRET is the sandbox's public demo secret.",
            "Set SAM_APP_CLIENT_SECRET to a secret of your own app registration (or use a certificate).",
        ),
        (
            {"SAM_APP_CERTIFICATE_FILE": str(demo.CERT_PATH)},
            "controlpanel.E017",
            "SAM_APP_CERTIFICATE_FILE holds the sandbox's public demo certificate or key.",
            "Set SAM_APP_CERTIFICATE_FILE to your own certificate and key, registered in Entra ID.",
        ),
        (
            {"SITE_URL": "http://panel.example.com"},
            "controlpanel.E018",
            "SITE_URL is not an https:// URL; Entra ID accepts http redirect URIs for localhost only, "
            "and sessions would travel in clear.",
            "Set SITE_URL to the panel's public https:// address.",
        ),
        (
            {"SAM_APP_REDIRECT_URI": "http://panel.example.com/onboarding/callback/"},
            "controlpanel.E019",
            "SAM_APP_REDIRECT_URI is not an https:// URL; Entra ID accepts http redirect URIs for "
            "localhost only, and sessions would travel in clear.",
            "Set SAM_APP_REDIRECT_URI to the panel's public https:// address.",
        ),
        (
            {"DASHBOARD_SIGNIN_REDIRECT_URI": "http://panel.example.com/dashboard/signin/callback/"},
            "controlpanel.E020",
            "DASHBOARD_SIGNIN_REDIRECT_URI is not an https:// URL; Entra ID accepts http redirect URIs "
            "for localhost only, and sessions would travel in clear.",
            "Set DASHBOARD_SIGNIN_REDIRECT_URI to the panel's public https:// address.",
        ),
        (
            {
                "SAM_APP_ADMIN_CONSENT_REDIRECT_URI": "http://panel.example.com/onboarding/admin-consent/callback/"
            },
            "controlpanel.E021",
            "SAM_APP_ADMIN_CONSENT_REDIRECT_URI is not an https:// URL; Entra ID accepts http redirect URIs "
            "for localhost only, and sessions would travel in clear.",
            "Set SAM_APP_ADMIN_CONSENT_REDIRECT_URI to the panel's public https:// address.",
        ),
    ],
)
def test_each_sandbox_setting_is_refused_in_production_with_its_fix(
    overrides: dict[str, object], check_id: str, message: str, hint: str
) -> None:
    [error] = _sandbox_errors(**overrides)
    assert (error.id, error.msg, error.hint) == (check_id, message, hint)


def test_the_demo_certificate_is_recognised_by_content_wherever_it_was_copied(tmp_path: Path) -> None:
    copy = tmp_path / "cert-and-key.pem"
    copy.write_text(demo.CERT_PATH.read_text() + demo.KEY_PATH.read_text())
    [error] = _sandbox_errors(SAM_APP_CERTIFICATE_FILE=str(copy))
    assert error.id == "controlpanel.E017"


def test_a_host_named_in_identity_allowed_hosts_is_accepted_but_never_a_loopback() -> None:
    proxy = "https://login.egress-proxy.example"
    assert (
        _sandbox_errors(IDENTITY_AUTHORITY_HOST=proxy, IDENTITY_ALLOWED_HOSTS=["login.egress-proxy.example"])
        == []
    )
    [error] = _sandbox_errors(
        IDENTITY_AUTHORITY_HOST="https://127.0.0.1:8443", IDENTITY_ALLOWED_HOSTS=["127.0.0.1"]
    )
    assert error.id == "controlpanel.E011"


def test_national_cloud_hosts_known_to_msal_are_microsoft_hosts() -> None:
    assert (
        _sandbox_errors(
            IDENTITY_AUTHORITY_HOST="https://login.microsoftonline.us",
            GRAPH_BASE_URL="https://graph.microsoft.us",
        )
        == []
    )


@pytest.mark.django_db  # check --deploy reads the audit table's owner (controlpanel/database_roles.py)
def test_check_deploy_fails_with_the_sandbox_settings_in_production() -> None:
    with (
        override_settings(ENVIRONMENT="production", **SANDBOX_SETTINGS),
        pytest.raises(SystemCheckError) as raised,
    ):
        call_command("check", deploy=True)
    for n in range(11, 21):
        assert f"controlpanel.E0{n}" in str(raised.value)


def test_check_deploy_fails_with_the_demo_defaults_of_the_settings_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The settings module's own defaults (a fresh process with only ENVIRONMENT=production and the
    few values production needs anyway): the sandbox defaults are among the refusals."""
    env = {
        "ENVIRONMENT": "production",
        "DJANGO_SETTINGS_MODULE": "controlpanel.settings",
        "SECRET_KEY": "k" * 64,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "CACHE_URL": "redis://127.0.0.1:6379/0",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "SAM_APP_CLIENT_ID": demo.CLIENT_ID,
        "SAM_APP_CLIENT_SECRET": demo.CLIENT_SECRET,
        "FIELD_ENCRYPTION_KEYSET": settings.FIELD_ENCRYPTION_KEYSET,
        "PATH": os.environ.get("PATH", ""),
    }
    run = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    for n in range(11, 21):
        if n == 17:  # no certificate file is configured by default
            continue
        assert f"controlpanel.E0{n}" in run.stderr, run.stderr


SANDBOX_KEY_VAULT = {
    "KEY_VAULT_TENANT_ID": demo.VENDOR_TENANT,
    "KEY_VAULT_CLIENT_ID": demo.HOST_CLIENT_ID,
    "KEY_VAULT_CLIENT_CERTIFICATE_PATH": str(demo.HOST_IDENTITY_PATH),
    "KEY_VAULT_AUTHORITY_HOST": "https://127.0.0.1:8443",
    "KEY_VAULT_CA_BUNDLE": settings.SANDBOX_CA_BUNDLE,
    "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": False,
}
MICROSOFT_KEY_VAULT = {
    "KEY_VAULT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "KEY_VAULT_CLIENT_ID": "",
    "KEY_VAULT_CLIENT_CERTIFICATE_PATH": "",
    "KEY_VAULT_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "KEY_VAULT_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": True,
}


def test_the_sandbox_key_vault_settings_are_refused_in_production() -> None:
    with override_settings(**{**MICROSOFT_PRODUCTION, **SANDBOX_KEY_VAULT}):
        ids = sorted(str(error.id) for error in check_production_key_vault(None))
    assert ids == ["controlpanel.E040", "controlpanel.E041", "controlpanel.E042", "controlpanel.E043"]
    with override_settings(**{**MICROSOFT_PRODUCTION, **MICROSOFT_KEY_VAULT}):
        assert check_production_key_vault(None) == []
    with override_settings(**{**MICROSOFT_PRODUCTION, **SANDBOX_KEY_VAULT, "ENVIRONMENT": "demo"}):
        assert check_production_key_vault(None) == []


def test_metrics_guards_are_checked() -> None:
    from controlpanel.checks import check_metrics_access

    with override_settings(**SAFE_PRODUCTION, METRICS_BEARER_TOKEN="", METRICS_ALLOWED_CIDRS=[]):
        assert [e.id for e in check_metrics_access(None)] == ["controlpanel.E052"]
    with override_settings(
        **SAFE_PRODUCTION, METRICS_BEARER_TOKEN="short", METRICS_ALLOWED_CIDRS=["10.0.0.0/33"]
    ):
        assert sorted(str(e.id) for e in check_metrics_access(None)) == [
            "controlpanel.E050",
            "controlpanel.E051",
        ]
    with override_settings(
        **SAFE_PRODUCTION, METRICS_BEARER_TOKEN="t" * 32, METRICS_ALLOWED_CIDRS=["10.0.0.0/8"]
    ):
        assert check_metrics_access(None) == []


def test_audit_retention_settings_are_checked() -> None:
    from controlpanel.checks import check_audit_retention

    with override_settings(AUDIT_RETENTION_DAYS=30, AUDIT_PARTITIONS_AHEAD_MONTHS=0):
        assert sorted(str(e.id) for e in check_audit_retention(None)) == [
            "controlpanel.E054",
            "controlpanel.E055",
        ]
    with override_settings(AUDIT_RETENTION_DAYS=400, AUDIT_PARTITIONS_AHEAD_MONTHS=3):
        assert check_audit_retention(None) == []
