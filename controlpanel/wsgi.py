"""WSGI entry point: gunicorn controlpanel.wsgi."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

application = get_wsgi_application()

# Load (and, when it is wrapped by Key Vault, unwrap) the keyset now: a refusal stops the process at
# start-up with a message naming the key and what Key Vault answered, not at the first request.
from tokens.encryption.keyset import keyset_get  # noqa: E402 - needs the configured Django above

keyset_get()
