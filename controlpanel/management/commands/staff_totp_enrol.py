"""Enrol a staff user's authenticator app for the admin's MFA (TOTP, django-otp).

Prints the otpauth:// URI, then a QR code of it, once: scan the code (or type the URI), then sign in
to /admin/ with the password and the 6-digit code. The secret is not shown again; --replace enrols a
new device and removes the old ones (a lost phone).
"""

from __future__ import annotations

import io
from typing import Any

import qrcode
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlpanel.models import StaffTOTPDevice

# A terminal with light text on a dark background would show the code inverted, which some
# authenticator apps cannot read: on a terminal the code is drawn black on white whatever the theme.
BLACK_ON_WHITE = "\x1b[30;47m"
RESET = "\x1b[0m"


def qr_text(*, data: str, colour: bool) -> str:
    """`data` as a QR code in text, two modules per character (half blocks), with the standard
    four-module quiet zone: about 30 lines for an otpauth URI."""
    code = qrcode.QRCode(border=4)
    code.add_data(data)
    out = io.StringIO()
    code.print_ascii(out=out)
    lines = out.getvalue().rstrip("\n").split("\n")
    if colour:
        lines = [f"{BLACK_ON_WHITE}{line}{RESET}" for line in lines]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Enrol a TOTP authenticator for a staff user: prints its otpauth URI and a QR code, once."

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
        # One write: Django's OutputWrapper ends every write with a newline.
        self.stdout.write(
            f"{uri}\n\n{qr_text(data=uri, colour=self.stdout.isatty())}\n\n"
            "Scan the code (or enter the URI) in an authenticator app; it is not shown again."
        )
