from __future__ import annotations

import io
import json
import logging
import logging.config
import secrets

import pytest
from django.conf import settings

from controlpanel.logging import REDACTED, redact


def _canary() -> str:
    # Shaped like a real refresh token / secret: long, mixed case and digits.
    return "CANARY" + secrets.token_urlsafe(48) + "Z9"


@pytest.fixture
def captured_log(request: pytest.FixtureRequest):
    """Configure the project's real LOGGING dict with the given format, writing to a buffer."""
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING))
    config["formatters"]["active"] = config["formatters"][request.param]
    config["handlers"]["console"]["formatter"] = "active"
    config["handlers"]["console"]["class"] = "logging.StreamHandler"
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.parametrize("captured_log", ["text", "json"], indirect=True)
def test_a_planted_canary_never_reaches_a_log_line(captured_log: io.StringIO) -> None:
    canary = _canary()
    jwt_canary = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlLWNhbmFyeQ"
    log = logging.getLogger("tokens.issuance.broker")
    log.info("refresh answered %s", {"refresh_token": canary, "token_type": "Bearer"})
    log.warning("calling with Authorization: Bearer %s", canary)
    log.info("plain %s in the middle", canary)
    log.info("an id token %s", jwt_canary)
    log.info("form body client_secret=%s&grant_type=refresh_token", "short-secret")
    log.info("extra field", extra={"refresh_token": canary})
    try:
        raise ValueError(f"bad token {canary}")
    except ValueError:
        log.exception("refresh failed")

    output = captured_log.getvalue()
    assert output.count("\n") == 7, "one line per event, tracebacks folded"
    assert canary not in output
    assert "c2lnbmF0dXJlLWNhbmFyeQ" not in output
    assert "short-secret" not in output
    assert REDACTED in output


@pytest.mark.parametrize("captured_log", ["json"], indirect=True)
def test_json_lines_parse_and_keep_useful_identifiers(captured_log: io.StringIO) -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    logging.getLogger("tokens.renewal.sweep").info(
        "renewed grant", extra={"tenant_id": tenant, "grant_id": 7}
    )
    line = json.loads(captured_log.getvalue())
    assert line["message"] == "renewed grant"
    assert line["tenant_id"] == tenant
    assert line["grant_id"] == 7
    assert line["level"] == "INFO"


def test_redact_leaves_ordinary_text_and_paths_alone() -> None:
    text = "/work/main/.venv/lib/python3.11/site-packages/django/core/handlers/base.py line 12"
    assert redact(text) == text


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("refresh_token=opensesame1", "refresh_token="),
        ('{"client_secret": "opensesame1"}', '{"client_secret": "'),
        ("{'x2token': 'opensesame1'}", "{'x2token': '"),
        ("Password : opensesame1", "Password : "),
        ("data={'args': \"('1b4e28ba',)\", 'api_key': 'opensesame1'}", "'args'"),
    ],
)
def test_named_pairs_lose_their_value_whatever_the_quoting(line: str, kept: str) -> None:
    redacted = redact(line)
    assert "opensesame1" not in redacted
    assert kept in redacted and REDACTED in redacted


def test_only_names_that_contain_a_secret_word_lose_their_value() -> None:
    # A name is read whole up to its separator: "token2" is not one (the digit ends it), while
    # "tokenizer" contains "token" and is redacted, as the earlier pattern did.
    assert redact("token2=visible tokenizer: hidden") == "token2=visible tokenizer: [REDACTED]"
    assert redact("grant=1b4e28ba state=active") == "grant=1b4e28ba state=active"
