"""django-otp's TOTP device admin shows and edits the seed in clear: staff authenticators have no
admin page (they are enrolled with `manage.py staff_totp_enrol`)."""

from django.contrib import admin
from django_otp.plugins.otp_totp.models import TOTPDevice

if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
