"""Enrol a staff user's authenticator app for the admin's MFA (TOTP, django-otp).

Prints the otpauth:// URI (and a QR code of it) once: scan it, then sign in to /admin/ with the
password and the 6-digit code. The secret is not shown again; --replace enrols a new device and
removes the old ones (a lost phone).
"""

from __future__ import annotations

from typing import Any

import qrcode
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlpanel.models import StaffTOTPDevice


class Command(BaseCommand):
    help = "Enrol a TOTP authenticator for a staff user and print its otpauth URI once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true", help="Remove existing devices first.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"], is_staff=True).first()
        if user is None:
            raise CommandError(f"no staff user named {options['username']!r}")
        with transaction.atomic():
            devices = StaffTOTPDevice.objects.filter(user=user)
            if devices.exists() and not options["replace"]:
                raise CommandError("this user already has an authenticator; use --replace to enrol a new one")
            devices.delete()
            device = StaffTOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        uri = device.config_url
        code = qrcode.QRCode(border=1)
        code.add_data(uri)
        code.print_ascii(out=self.stdout)
        self.stdout.write(
            f"\n{uri}\n\nScan the code (or enter the URI) in an authenticator app; it is not shown again."
        )
