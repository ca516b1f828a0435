"""Staff authenticators (TOTP) whose seeds are encrypted at rest with the vault's keyset.

django-otp's own TOTPDevice keeps the seed as plain hex in its table, so a database dump would
hold every staff member's second factor, and its admin page shows it. This device is the same
TOTP device (django-otp's verification, throttling and otpauth URI, reused as they are) with the
seed in an EncryptedTextField bound to the row, and no admin page at all.
"""

from __future__ import annotations

import uuid

from django.db import models
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key

from tokens.encryption.fields import EncryptedTextField


# django-otp ships no type information: its base classes are Any to mypy, hence the annotations.
class StaffTOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    # The seed's ciphertext is bound to a row id known before INSERT; the primary key stays an
    # integer because django-otp's persistent device ids (in the session) must be integers.
    seed_id: models.UUIDField[uuid.UUID, uuid.UUID] = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False
    )
    key = EncryptedTextField(default=default_key, row_id_field="seed_id")
    step: models.PositiveSmallIntegerField[int, int] = models.PositiveSmallIntegerField(default=30)
    t0: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    digits: models.PositiveSmallIntegerField[int, int] = models.PositiveSmallIntegerField(
        choices=[(6, 6), (8, 8)], default=6
    )
    tolerance: models.PositiveSmallIntegerField[int, int] = models.PositiveSmallIntegerField(default=1)
    drift: models.SmallIntegerField[int, int] = models.SmallIntegerField(default=0)
    last_t: models.BigIntegerField[int, int] = models.BigIntegerField(default=-1)

    # The TOTP arithmetic is django-otp's; it reads only the fields above.
    bin_key = TOTPDevice.bin_key
    verify_token = TOTPDevice.verify_token
    get_throttle_factor = TOTPDevice.get_throttle_factor
    config_url = TOTPDevice.config_url
    _read_str_from_settings = TOTPDevice._read_str_from_settings

    class Meta(Device.Meta):
        verbose_name = "staff authenticator"

    def __repr__(self) -> str:
        return f"<StaffTOTPDevice {self.pk} of user {self.user_id}>"
