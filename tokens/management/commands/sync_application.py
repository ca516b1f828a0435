"""Store the application registration and its credential from the SAM_APP_* settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tokens.audit import Actor
from tokens.credentials.applications import (
    ApplicationSpec,
    application_upsert,
    credential_certificate_add,
    credential_key_vault_certificate_add,
    credential_key_vault_secret_add,
    credential_secret_add,
    expiry_parse,
)
from tokens.models import AuditEvent
from tokens.staff_admin.staff_changes import staff_change_record


class Command(BaseCommand):
    help = "Create or update the application and its credential from SAM_APP_* settings."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.SAM_APP_CLIENT_ID:
            raise CommandError("SAM_APP_CLIENT_ID is not set.")
        if not (
            settings.SAM_APP_CLIENT_SECRET
            or settings.SAM_APP_CERTIFICATE_FILE
            or settings.SAM_APP_KEY_VAULT_SECRET_ID
            or settings.SAM_APP_KEY_VAULT_KEY_ID
        ):
            raise CommandError(
                "Set SAM_APP_CLIENT_SECRET, SAM_APP_CERTIFICATE_FILE, SAM_APP_KEY_VAULT_SECRET_ID or "
                "SAM_APP_KEY_VAULT_KEY_ID (with SAM_APP_KEY_VAULT_CERTIFICATE_FILE)."
            )
        if bool(settings.SAM_APP_KEY_VAULT_KEY_ID) != bool(settings.SAM_APP_KEY_VAULT_CERTIFICATE_FILE):
            raise CommandError("SAM_APP_KEY_VAULT_KEY_ID and SAM_APP_KEY_VAULT_CERTIFICATE_FILE go together.")
        application = application_upsert(
            spec=ApplicationSpec(
                name="SAM control panel",
                client_id=settings.SAM_APP_CLIENT_ID,
                authority_host=settings.IDENTITY_AUTHORITY_HOST,
                redirect_uri=settings.SAM_APP_REDIRECT_URI,
                audiences=settings.SAM_AUDIENCES,
            )
        )
        stored_before = set(application.credentials.values_list("pk", flat=True))
        try:
            with transaction.atomic():
                added = []
                if settings.SAM_APP_CLIENT_SECRET:
                    added.append(
                        credential_secret_add(
                            application=application,
                            secret=settings.SAM_APP_CLIENT_SECRET,
                            expires_at=expiry_parse(settings.SAM_APP_CLIENT_SECRET_EXPIRES_AT),
                        )
                    )
                if settings.SAM_APP_CERTIFICATE_FILE:
                    added.append(
                        credential_certificate_add(
                            application=application, pem=Path(settings.SAM_APP_CERTIFICATE_FILE).read_bytes()
                        )
                    )
                if settings.SAM_APP_KEY_VAULT_SECRET_ID:
                    added.append(
                        credential_key_vault_secret_add(
                            application=application,
                            secret_id=settings.SAM_APP_KEY_VAULT_SECRET_ID,
                            expires_at=expiry_parse(settings.SAM_APP_CLIENT_SECRET_EXPIRES_AT),
                        )
                    )
                if settings.SAM_APP_KEY_VAULT_KEY_ID:
                    added.append(
                        credential_key_vault_certificate_add(
                            application=application,
                            key_id=settings.SAM_APP_KEY_VAULT_KEY_ID,
                            certificate_pem=Path(settings.SAM_APP_KEY_VAULT_CERTIFICATE_FILE).read_bytes(),
                        )
                    )
                for credential in added:
                    if credential.pk not in stored_before:  # an unchanged secret is not stored again
                        staff_change_record(
                            actor=Actor.system("manage.py sync_application"),
                            action=AuditEvent.Action.CREDENTIAL_ADDED,
                            subject=credential,
                            changes=f"added, valid until {credential.expires_at:%Y-%m-%d}",
                            application=application,
                        )
        except (OSError, ValueError) as error:
            raise CommandError(f"Could not store the credential: {error}") from error
        self.stdout.write(
            f"Application {application.client_id} stored with {application.credentials.count()} credential(s)."
        )
