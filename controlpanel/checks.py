"""System checks that refuse an unsafe or incomplete configuration with a clear message.

Production is declared with ENVIRONMENT=production. The embedded demo defaults (SQLite, the
filesystem broker, DEBUG, the sandbox authority) are fine on a laptop and refused there.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from controlpanel import settings as defaults


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
    if settings.FIELD_ENCRYPTION_KEYSET or settings.FIELD_ENCRYPTION_KEYSET_FILE:
        return []
    return [
        Error(
            "No encryption keyset is configured; refresh tokens and credentials cannot be stored.",
            hint=(
                "Run `python manage.py generate_keyset --output var/keyset.json` and set "
                "FIELD_ENCRYPTION_KEYSET_FILE to that path (or FIELD_ENCRYPTION_KEYSET to its content)."
            ),
            id="controlpanel.E010",
        )
    ]


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
                    id="controlpanel.E020",
                )
            )
    token = settings.METRICS_BEARER_TOKEN
    if token and len(token) < 32:
        errors.append(
            Error(
                "METRICS_BEARER_TOKEN is shorter than 32 characters.",
                hint="Set it to a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
                id="controlpanel.E021",
            )
        )
    if _is_production() and not token and not settings.METRICS_ALLOWED_CIDRS:
        errors.append(
            Error(
                "The metrics endpoint has no guard configured: Prometheus cannot scrape it.",
                hint="Set METRICS_BEARER_TOKEN (Prometheus sends it as a bearer token) and/or METRICS_ALLOWED_CIDRS.",
                id="controlpanel.E022",
            )
        )
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir and not os.access(multiproc_dir, os.W_OK):
        errors.append(
            Error(
                f"PROMETHEUS_MULTIPROC_DIR={multiproc_dir} is not a writable directory.",
                hint="Create it (empty) before starting gunicorn and Celery, writable by their user.",
                id="controlpanel.E023",
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
                id="controlpanel.E030",
            )
        )
    if settings.AUDIT_PARTITIONS_AHEAD_MONTHS < 1:
        errors.append(
            Error(
                "AUDIT_PARTITIONS_AHEAD_MONTHS must be at least 1.",
                hint="Set it to 3 (the default): beat then has months to create next month's partition.",
                id="controlpanel.E031",
            )
        )
    return errors
