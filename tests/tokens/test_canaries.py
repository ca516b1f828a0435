"""Secrets never leak: real token values and the client secret, planted by a full run, are
looked for in every log line, every page, every audit row and a dump of the database."""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import logging.config

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlpanel.models import StaffTOTPDevice
from sandbox import demo
from tests.fixtures.database import pg_dump_text
from tests.fixtures.panel import consent_run
from tokens.issuance.broker import access_token_get
from tokens.models import AuditEvent, CachedAccessToken, ConsentGrant


@pytest.fixture
def every_log_line():
    """The project's logging configuration, with every logger (MSAL's and urllib3's included) at
    DEBUG, writing to a buffer."""
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING))
    config["handlers"]["console"]["stream"] = stream
    config["root"]["level"] = "DEBUG"
    for logger in config["loggers"].values():
        logger["level"] = "DEBUG"
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.django_db(transaction=True)
def test_no_secret_reaches_a_log_a_page_an_audit_row_or_the_database_dump(
    application, panel_settings, client, service_actor, every_log_line
) -> None:
    run = consent_run(client, panel_settings)
    pages = [run.page.content.decode(), client.get("/onboarding/").content.decode()]
    grant = ConsentGrant.objects.select_related("partner").get()
    access_tokens = [
        access_token_get(
            partner=grant.partner, audience=audience, purpose="canary", actor=service_actor
        ).token
        for audience in ("partner_center", "graph", "arm")
    ]
    access_tokens.append(
        access_token_get(
            partner=grant.partner,
            audience="graph",
            purpose="canary",
            actor=service_actor,
            customer_tenant=demo.ADATUM,
        ).token
    )
    grant.refresh_from_db()
    canaries = {
        "client secret": demo.CLIENT_SECRET,
        "refresh token": grant.refresh_token or "",
        **{f"access token {n}": token for n, token in enumerate(access_tokens)},
    }
    assert all(len(value) > 20 for value in canaries.values())

    logs = every_log_line.getvalue()
    assert "token" in logs.lower(), "the run logged something, so the absence below means something"
    audit_rows = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert "canary" in audit_rows
    places = {"logs": logs, "pages": "\n".join(pages), "audit rows": audit_rows}
    if connection.vendor == "postgresql":
        assert CachedAccessToken.objects.count() == len(access_tokens), "the dump holds every cached token"
        places["pg_dump"] = pg_dump_text()
        assert str(grant.pk) in places["pg_dump"]
    for place, text in places.items():
        for name, value in canaries.items():
            assert value not in text, f"the {name} leaked into {place}"


@pytest.mark.django_db(transaction=True)
def test_no_totp_seed_in_the_database_the_admin_or_a_dump(staff_user, staff_client) -> None:
    device = StaffTOTPDevice.objects.get(user=staff_user)
    seed_hex = device.key
    seed_base32 = base64.b32encode(bytes.fromhex(seed_hex)).decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM controlpanel_stafftotpdevice WHERE id = %s", [device.pk])
        (stored,) = cursor.fetchone()
    assert stored.startswith("tink1:") and seed_hex not in stored
    # Staff authenticators have no admin page; django-otp's own (which shows the seed) is gone.
    assert staff_client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert staff_client.get("/admin/controlpanel/stafftotpdevice/").status_code == 404
    index = staff_client.get("/admin/").content.decode()
    places = {"admin index": index}
    if connection.vendor == "postgresql":
        places["pg_dump"] = pg_dump_text()
        assert device.seed_id.hex[:8] in places["pg_dump"].replace("-", "")
    for place, text in places.items():
        assert seed_hex not in text and seed_base32 not in text, place


@pytest.mark.django_db
def test_existing_plaintext_seeds_move_into_encrypted_devices(staff_user) -> None:
    old = TOTPDevice.objects.create(user=staff_user, name="old phone", confirmed=True)
    seeds_move = importlib.import_module("controlpanel.migrations.0002_move_totp_seeds").seeds_move
    seeds_move(django_apps, None)
    assert not TOTPDevice.objects.exists()
    moved = StaffTOTPDevice.objects.get(name="old phone")
    assert moved.key == old.key and moved.user_id == staff_user.pk
