"""Demo data: the application as the sandbox's demo directory registers it, and a staff user.

The demo client secret is read from the sandbox's directory file (public demo material), so no
credential is written into the panel's code or settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from controlpanel.demo_guard import demo_command_refuse_in_production
from controlpanel.demo_setup import DEMO_STAFF_USERNAME, demo_staff_password
from sandbox.directory import DEMO_DIRECTORY, load_directory
from tokens.credentials.applications import ApplicationSpec, application_upsert, credential_secret_add


class Command(BaseCommand):
    help = "Store the sandbox's demo application and credential, and a demo staff user."

    def handle(self, *args: Any, **options: Any) -> None:
        demo_command_refuse_in_production(command="load_demo_data")
        directory = load_directory(DEMO_DIRECTORY)
        registration = next(iter(directory.apps.values()))
        application = application_upsert(
            spec=ApplicationSpec(
                name=registration.display_name,
                client_id=registration.client_id,
                authority_host=settings.IDENTITY_AUTHORITY_HOST,
                redirect_uri=settings.SAM_APP_REDIRECT_URI,
                audiences=settings.SAM_AUDIENCES,
            )
        )
        secret = registration.secrets[0]
        credential_secret_add(
            application=application,
            secret=secret.value,
            expires_at=datetime.fromtimestamp(secret.expires, tz=UTC),
        )
        password = demo_staff_password()
        user_model = get_user_model()
        if not user_model.objects.filter(username=DEMO_STAFF_USERNAME).exists():
            user_model.objects.create_superuser(DEMO_STAFF_USERNAME, "operator@example.invalid", password)
        self.stdout.write(
            f"Demo application {application.client_id} ready; staff sign-in: {DEMO_STAFF_USERNAME} / {password}"
            f" plus a TOTP code (enrol once: python manage.py staff_totp_enrol {DEMO_STAFF_USERNAME})"
        )
