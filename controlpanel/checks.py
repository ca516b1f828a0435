"""System checks that refuse an unsafe or incomplete configuration with a clear message.

Production is declared with ENVIRONMENT=production. The embedded demo defaults (SQLite, the
filesystem broker, DEBUG, the sandbox authority, its CA and the demo application) are fine on a
laptop and refused there.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from controlpanel import settings as defaults
from sandbox import demo
from tokens.encryption.keyset import DEMO_KEYSET_MISSING_HINT, KEYSET_NOT_CONFIGURED_HINT, keyset_file_is_demo


def _is_production() -> bool:
    return settings.ENVIRONMENT == "production"


@register(Tags.security)
def check_production_safety(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if not _is_production():
        return []
    errors: list[CheckMessage] = []
    if settings.DEBUG:
        errors.append(Error("DEBUG is on in production.", hint="Set DEBUG=false.", id="controlpanel.E001"))
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        errors.append(
            Error(
                "SQLite is the demo database; production needs PostgreSQL.",
                hint="Set DATABASE_URL=postgres://user@host:5432/dbname.",
                id="controlpanel.E002",
            )
        )
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        errors.append(
            Error(
                "The filesystem Celery broker works on one host only.",
                hint="Set CELERY_BROKER_URL=redis://host:6379/0.",
                id="controlpanel.E003",
            )
        )
    if urlparse(settings.IDENTITY_AUTHORITY_HOST).scheme != "https":
        errors.append(
            Error(
                "The identity authority must be reached over HTTPS.",
                hint="Set IDENTITY_AUTHORITY_HOST=https://login.microsoftonline.com.",
                id="controlpanel.E004",
            )
        )
    if settings.SECRET_KEY == defaults.INSECURE_DEFAULT_SECRET_KEY or len(settings.SECRET_KEY) < 50:
        errors.append(
            Error(
                "SECRET_KEY is the demo default or shorter than 50 characters.",
                hint="Set SECRET_KEY to a long random value.",
                id="controlpanel.E005",
            )
        )
    if "locmem" in settings.CACHES["default"]["BACKEND"].lower():
        errors.append(
            Error(
                "The local-memory cache is per process: cached tokens and locks would not be shared.",
                hint="Set CACHE_URL=redis://host:6379/1.",
                id="controlpanel.E006",
            )
        )
    if not settings.SAM_APP_CLIENT_ID:
        errors.append(
            Error(
                "SAM_APP_CLIENT_ID is not set.",
                hint="Set it to the marketplace application's client id.",
                id="controlpanel.E007",
            )
        )
    return errors


@register(Tags.security)
def check_encryption_keyset(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    path = settings.FIELD_ENCRYPTION_KEYSET_FILE
    if settings.FIELD_ENCRYPTION_KEYSET:
        return []
    if not path:
        return [
            Error(
                "No encryption keyset is configured; refresh tokens and credentials cannot be stored.",
                hint=KEYSET_NOT_CONFIGURED_HINT,
                id="controlpanel.E010",
            )
        ]
    # Outside production the demo's keyset is the default: say how to create it (a keyset made
    # with generate_keyset instead could not read the demo's data).
    if keyset_file_is_demo(path=path) and not Path(path).exists():
        return [
            Error(
                f"The demo's encryption keyset {path} does not exist yet.",
                hint=DEMO_KEYSET_MISSING_HINT,
                id="controlpanel.E010",
            )
        ]
    return []


# Microsoft's hosts, by what they serve. Authorities: the hosts MSAL itself knows as Microsoft's
# (msal.authority.WELL_KNOWN_AUTHORITY_HOSTS: the public cloud and the national clouds).
# Graph: its public and national-cloud endpoints (Microsoft Graph "national cloud deployments").
# Partner Center: its one public endpoint (Partner Center REST API reference).
GRAPH_HOSTS = frozenset(
    {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
PARTNER_CENTER_HOSTS = frozenset({"api.partnercenter.microsoft.com"})


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _allowed_hosts() -> set[str]:
    return {host.strip().lower() for host in settings.IDENTITY_ALLOWED_HOSTS if host.strip()}


def _host_error(
    *, setting: str, microsoft_hosts: frozenset[str], example: str, check_id: str
) -> Error | None:
    """A loopback host is refused whatever IDENTITY_ALLOWED_HOSTS says (it is where the sandbox
    runs); another host must be Microsoft's, or be named in IDENTITY_ALLOWED_HOSTS. (A non-HTTPS
    authority is E004's.)"""
    url = urlparse(str(getattr(settings, setting)))
    host = (url.hostname or "").lower()
    if _is_loopback(host):
        return Error(
            f"{setting} points at a loopback address ({host}): the sandbox, not Microsoft.",
            hint=f"Set {setting}={example}.",
            id=check_id,
        )
    https = url.scheme == "https" or setting == "IDENTITY_AUTHORITY_HOST"
    if not https or host not in microsoft_hosts | _allowed_hosts():
        return Error(
            f"{setting} is not an HTTPS URL on one of Microsoft's hosts ({host or 'no host'}).",
            hint=(
                f"Set {setting}={example}; for another Microsoft cloud or an egress proxy, name its "
                "host in IDENTITY_ALLOWED_HOSTS."
            ),
            id=check_id,
        )
    return None


def _is_sandbox_ca(bundle: str) -> bool:
    if not bundle:
        return False
    path = Path(bundle)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, settings.BASE_DIR / path]
    # VAR_DIR may name another folder: the checkout's var/sandbox/ is the sandbox's all the same.
    sandbox_dirs = {
        (settings.VAR_DIR / "sandbox").resolve(),
        (settings.BASE_DIR / "var" / "sandbox").resolve(),
    }
    sandbox_ca = Path(settings.SANDBOX_CA_BUNDLE).resolve()
    return any(
        candidate.resolve() == sandbox_ca or any(candidate.resolve().is_relative_to(d) for d in sandbox_dirs)
        for candidate in candidates
    )


def _is_demo_certificate(certificate_file: str) -> bool:
    if not certificate_file:
        return False
    path = Path(certificate_file).resolve()
    if path.is_relative_to(demo.HERE):
        return True
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False  # sync_application reports an unreadable file itself
    demo_cert = demo.CERT_PATH.read_text().strip()
    return demo_cert in content or demo.KEY_PATH.read_text().strip() in content


@register(Tags.security)
def check_production_refuses_sandbox(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """The sandbox's settings in production would send partners' credentials to a local emulator
    and trust its CA: each is refused with the setting that fixes it."""
    if not _is_production():
        return []
    errors: list[CheckMessage] = []
    for setting, hosts, example, check_id in (
        ("IDENTITY_AUTHORITY_HOST", WELL_KNOWN_AUTHORITY_HOSTS, "https://login.microsoftonline.com", "controlpanel.E011"),
        ("GRAPH_BASE_URL", GRAPH_HOSTS, "https://graph.microsoft.com", "controlpanel.E012"),
        ("PARTNER_CENTER_BASE_URL", PARTNER_CENTER_HOSTS, "https://api.partnercenter.microsoft.com", "controlpanel.E013"),
    ):  # fmt: skip
        error = _host_error(setting=setting, microsoft_hosts=hosts, example=example, check_id=check_id)
        if error is not None:
            errors.append(error)
    if _is_sandbox_ca(settings.IDENTITY_CA_BUNDLE):
        errors.append(
            Error(
                "IDENTITY_CA_BUNDLE is the sandbox's CA: it would trust the sandbox, not Microsoft.",
                hint="Set IDENTITY_CA_BUNDLE to the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt.",
                id="controlpanel.E014",
            )
        )
    if settings.SAM_APP_CLIENT_ID.strip().lower() == demo.CLIENT_ID:
        errors.append(
            Error(
                "SAM_APP_CLIENT_ID is the sandbox's demo application.",
                hint="Set SAM_APP_CLIENT_ID to the client id of your own app registration in Entra ID.",
                id="controlpanel.E015",
            )
        )
    if settings.SAM_APP_CLIENT_SECRET == demo.CLIENT_SECRET:
        errors.append(
            Error(
                "SAM_APP_CLIENT_SECRET is the sandbox's public demo secret.",
                hint="Set SAM_APP_CLIENT_SECRET to a secret of your own app registration (or use a certificate).",
                id="controlpanel.E016",
            )
        )
    if _is_demo_certificate(settings.SAM_APP_CERTIFICATE_FILE):
        errors.append(
            Error(
                "SAM_APP_CERTIFICATE_FILE holds the sandbox's public demo certificate or key.",
                hint="Set SAM_APP_CERTIFICATE_FILE to your own certificate and key, registered in Entra ID.",
                id="controlpanel.E017",
            )
        )
    for setting, check_id in (
        ("SITE_URL", "controlpanel.E018"),
        ("SAM_APP_REDIRECT_URI", "controlpanel.E019"),
        ("DASHBOARD_SIGNIN_REDIRECT_URI", "controlpanel.E020"),
        ("SAM_APP_ADMIN_CONSENT_REDIRECT_URI", "controlpanel.E021"),
    ):
        if urlparse(str(getattr(settings, setting))).scheme != "https":
            errors.append(
                Error(
                    f"{setting} is not an https:// URL; Entra ID accepts http redirect URIs for "
                    "localhost only, and sessions would travel in clear.",
                    hint=f"Set {setting} to the panel's public https:// address.",
                    id=check_id,
                )
            )
    return errors


def _key_vault_in_use() -> bool:
    return any(
        getattr(settings, name)
        for name in (
            "KEY_VAULT_TENANT_ID",
            "KEY_VAULT_CLIENT_ID",
            "KEY_VAULT_CLIENT_CERTIFICATE_PATH",
            "SAM_APP_KEY_VAULT_SECRET_ID",
            "SAM_APP_KEY_VAULT_KEY_ID",
        )
    )


@register(Tags.security)
def check_production_key_vault(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """With Key Vault in use in production, the sandbox's Key Vault settings are refused: they would
    send the host identity's assertions to a local emulator, trust its CA, or skip the SDK's check
    that a vault's challenge names Key Vault."""
    if not _is_production() or not _key_vault_in_use():
        return []
    errors: list[CheckMessage] = []
    error = _host_error(
        setting="KEY_VAULT_AUTHORITY_HOST",
        microsoft_hosts=WELL_KNOWN_AUTHORITY_HOSTS,
        example="https://login.microsoftonline.com",
        check_id="controlpanel.E040",
    )
    if error is not None:
        errors.append(error)
    if not settings.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE:
        errors.append(
            Error(
                "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE is off: the Azure SDK would send vault tokens to a "
                "vault whose challenge does not name Key Vault.",
                hint="Unset KEY_VAULT_VERIFY_CHALLENGE_RESOURCE (it is for the sandbox's vault only).",
                id="controlpanel.E041",
            )
        )
    if _is_sandbox_ca(settings.KEY_VAULT_CA_BUNDLE):
        errors.append(
            Error(
                "KEY_VAULT_CA_BUNDLE is the sandbox's CA: it would trust the sandbox, not Microsoft.",
                hint="Set KEY_VAULT_CA_BUNDLE to the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt.",
                id="controlpanel.E042",
            )
        )
    demo_files = {
        "KEY_VAULT_CLIENT_CERTIFICATE_PATH": settings.KEY_VAULT_CLIENT_CERTIFICATE_PATH,
        "SAM_APP_KEY_VAULT_CERTIFICATE_FILE": settings.SAM_APP_KEY_VAULT_CERTIFICATE_FILE,
    }
    for setting, value in demo_files.items():
        if _is_demo_certificate(value):
            errors.append(
                Error(
                    f"{setting} is one of the sandbox's public demo files.",
                    hint=f"Set {setting} to your own file (or use a managed identity: unset it).",
                    id="controlpanel.E043",
                )
            )
    return errors


@register(Tags.security)
def check_metrics_access(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for cidr in settings.METRICS_ALLOWED_CIDRS:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as error:
            errors.append(
                Error(
                    f"METRICS_ALLOWED_CIDRS holds a malformed network: {error}.",
                    hint="List networks such as 10.0.0.0/8,192.168.1.7/32.",
                    id="controlpanel.E050",
                )
            )
    token = settings.METRICS_BEARER_TOKEN
    if token and len(token) < 32:
        errors.append(
            Error(
                "METRICS_BEARER_TOKEN is shorter than 32 characters.",
                hint="Set it to a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
                id="controlpanel.E051",
            )
        )
    if _is_production() and not token and not settings.METRICS_ALLOWED_CIDRS:
        errors.append(
            Error(
                "The metrics endpoint has no guard configured: Prometheus cannot scrape it.",
                hint="Set METRICS_BEARER_TOKEN (Prometheus sends it as a bearer token) and/or METRICS_ALLOWED_CIDRS.",
                id="controlpanel.E052",
            )
        )
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir and not os.access(multiproc_dir, os.W_OK):
        errors.append(
            Error(
                f"PROMETHEUS_MULTIPROC_DIR={multiproc_dir} is not a writable directory.",
                hint="Create it (empty) before starting gunicorn and Celery, writable by their user.",
                id="controlpanel.E053",
            )
        )
    return errors


@register()
def check_audit_retention(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.AUDIT_RETENTION_DAYS < 31:
        errors.append(
            Error(
                f"AUDIT_RETENTION_DAYS={settings.AUDIT_RETENTION_DAYS} is less than a month.",
                hint="Retention drops whole monthly partitions; set 31 or more (default 400).",
                id="controlpanel.E054",
            )
        )
    if settings.AUDIT_PARTITIONS_AHEAD_MONTHS < 1:
        errors.append(
            Error(
                "AUDIT_PARTITIONS_AHEAD_MONTHS must be at least 1.",
                hint="Set it to 3 (the default): beat then has months to create next month's partition.",
                id="controlpanel.E055",
            )
        )
    return errors
