"""Move every django-otp TOTP device into StaffTOTPDevice (seed encrypted on save), then delete the
plaintext rows, so that an existing deployment keeps its staff's authenticators."""

from django.db import migrations


def seeds_move(apps, schema_editor):
    old_devices = apps.get_model("otp_totp", "TOTPDevice")
    new_devices = apps.get_model("controlpanel", "StaffTOTPDevice")
    for old in old_devices.objects.all():
        new_devices.objects.create(
            user_id=old.user_id,
            name=old.name,
            confirmed=old.confirmed,
            key=old.key,
            step=old.step,
            t0=old.t0,
            digits=old.digits,
            tolerance=old.tolerance,
            drift=old.drift,
            last_t=old.last_t,
            throttling_failure_timestamp=old.throttling_failure_timestamp,
            throttling_failure_count=old.throttling_failure_count,
            created_at=old.created_at,
            last_used_at=old.last_used_at,
        )
    old_devices.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("controlpanel", "0001_initial"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(seeds_move, migrations.RunPython.noop)]
