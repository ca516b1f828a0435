"""Secrets never leak: real token values and the client secret, planted by a full run, are
looked for in every log line, every page, every audit row and a dump of the database."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from django.conf import settings
from django.db import connection

from sandbox import demo
from tests.fixtures.database import pg_dump_text
from tests.fixtures.panel import consent_run
from tokens.broker import access_token_get
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
