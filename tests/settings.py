"""Test overlay on the one settings module: adds nothing a deployment would configure differently,
only the test-only app and fast password hashing."""

from controlpanel.settings import *  # noqa: F403
from controlpanel.settings import INSTALLED_APPS

ENVIRONMENT = "test"
INSTALLED_APPS = [*INSTALLED_APPS]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
