"""Test overlay on the one settings module: adds nothing a deployment would configure differently,
only the test-only app, fast password hashing and, when none is configured, a throwaway keyset."""

import os

from controlpanel.settings import *  # noqa: F403
from controlpanel.settings import INSTALLED_APPS
from tokens.encryption.keyset import keyset_generate

ENVIRONMENT = "test"
INSTALLED_APPS = [*INSTALLED_APPS, "tests.encryption_app"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# A keyset per test run, in memory only, so that `make test` needs no setup (and never uses the
# demo's keyset, the default outside production, nor the demo data it encrypts).
if not (os.environ.get("FIELD_ENCRYPTION_KEYSET") or os.environ.get("FIELD_ENCRYPTION_KEYSET_FILE")):
    FIELD_ENCRYPTION_KEYSET = keyset_generate()
    FIELD_ENCRYPTION_KEYSET_FILE = ""
