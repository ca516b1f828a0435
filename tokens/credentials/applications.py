"""Applications and their credentials: stored from configuration, rotated with overlap."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tokens.issuance.identity import msal_apps_clear
from tokens.models import Application, ApplicationCredential

DEFAULT_SECRET_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class ApplicationSpec:
    name: str
    client_id: str
    authority_host: str
    redirect_uri: str
    audiences: dict[str, list[str]]


def application_upsert(*, spec: ApplicationSpec) -> Application:
    application, _ = Application.objects.update_or_create(
        client_id=spec.client_id,
        defaults={
            "name": spec.name,
            "authority_host": spec.authority_host,
            "redirect_uri": spec.redirect_uri,
            "audiences": spec.audiences,
        },
    )
    return application


def credential_secret_add(
    *, application: Application, secret: str, expires_at: datetime | None = None
) -> ApplicationCredential:
    """Store a client secret unless that exact secret is already stored. The newest valid
    credential is used from now on; older ones stay valid until they lapse or are disabled."""
    with transaction.atomic():
        for existing in application.credentials.filter(
            kind=ApplicationCredential.Kind.SECRET, disabled_at=None
        ):
            if existing.secret == secret:
                _refusal_clear(existing)
                return existing
        credential = ApplicationCredential.objects.create(
            application=application,
            kind=ApplicationCredential.Kind.SECRET,
            secret=secret,
            expires_at=expires_at or timezone.now() + DEFAULT_SECRET_LIFETIME,
        )
    transaction.on_commit(msal_apps_clear)
    return credential


def _credential_store(
    *, application: Application, same: dict[str, Any], fields: dict[str, Any]
) -> ApplicationCredential:
    """The enabled credential matching `same`, or a new one; MSAL objects are rebuilt after commit."""
    with transaction.atomic():
        existing = application.credentials.filter(**same, disabled_at=None).first()
        if existing is not None:
            _refusal_clear(existing)
            return existing
        credential = ApplicationCredential.objects.create(application=application, **same, **fields)
    transaction.on_commit(msal_apps_clear)
    return credential


def _certificate_fields(certificate: x509.Certificate) -> dict[str, Any]:
    return {
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "not_before": certificate.not_valid_before_utc,
        "expires_at": certificate.not_valid_after_utc,
    }


def _thumbprint(certificate: x509.Certificate) -> str:
    return hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324  (x5t is defined as SHA-1)


def credential_certificate_add(*, application: Application, pem: bytes) -> ApplicationCredential:
    """Store a certificate credential from a PEM holding the certificate and its private key."""
    certificate = x509.load_pem_x509_certificate(pem)
    private_key = serialization.load_pem_private_key(pem, password=None)
    return _credential_store(
        application=application,
        same={"certificate_thumbprint": _thumbprint(certificate)},
        fields={
            "kind": ApplicationCredential.Kind.CERTIFICATE,
            "secret": private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            **_certificate_fields(certificate),
        },
    )


def credential_key_vault_secret_add(
    *, application: Application, secret_id: str, expires_at: datetime | None = None
) -> ApplicationCredential:
    """Store a reference to a client secret kept in Key Vault (its value is never stored)."""
    return _credential_store(
        application=application,
        same={"kind": ApplicationCredential.Kind.KEY_VAULT_SECRET, "key_vault_id": secret_id},
        fields={"expires_at": expires_at or timezone.now() + DEFAULT_SECRET_LIFETIME},
    )


def credential_key_vault_certificate_add(
    *, application: Application, key_id: str, certificate_pem: bytes
) -> ApplicationCredential:
    """Store a certificate whose private key stays in Key Vault (`key_id`, a versioned key id):
    only the public certificate is stored; Key Vault signs each assertion."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    return _credential_store(
        application=application,
        same={
            "kind": ApplicationCredential.Kind.KEY_VAULT_CERTIFICATE,
            "key_vault_id": key_id,
            "certificate_thumbprint": _thumbprint(certificate),
        },
        fields=_certificate_fields(certificate),
    )


def _refusal_clear(credential: ApplicationCredential) -> None:
    """Adding a refused credential again is staff saying "it is fixed": redemptions try it in its
    turn again (a new refusal flags it again)."""
    if credential.refused_at is not None:
        ApplicationCredential.objects.filter(pk=credential.pk).update(refused_at=None, refused_code="")
        credential.refused_at, credential.refused_code = None, ""
        transaction.on_commit(msal_apps_clear)


def expiry_parse(value: str) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value) or parse_datetime(f"{value}T00:00:00+00:00")
    if parsed is None:
        raise ValueError(f"not an ISO date or datetime: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
