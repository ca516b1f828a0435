"""A certificate credential signs its client assertions PS256 with `x5t#S256` (what Entra asks
for), through the MSAL object the panel uses, and the sandbox accepts them."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox import demo
from tests.fixtures.panel import demo_application_upsert
from tests.fixtures.sandbox import RunningSandbox
from tokens.credentials.applications import credential_certificate_add
from tokens.issuance.identity import IssuedTokens, MsalHttpClient, refresh_token_redeem

pytestmark = pytest.mark.django_db


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_certificate_assertion_is_ps256_with_x5t_s256_and_the_sandbox_accepts_it(
    panel_settings: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = demo_application_upsert(panel_settings)
    pem = demo.CERT_PATH.read_bytes() + demo.KEY_PATH.read_bytes()
    credential_certificate_add(application=application, pem=pem)  # the application's only credential

    # A refresh token of the demo admin agent, obtained outside the panel.
    app = panel_settings.msal_app()
    flow = app.initiate_auth_code_flow([demo.GRAPH_SCOPE], redirect_uri=demo.REDIRECT_URI)
    refresh_token = app.acquire_token_by_auth_code_flow(flow, panel_settings.sign_in(flow["auth_uri"]))[
        "refresh_token"
    ]

    # Record what the panel's MSAL object sends, then send it for real.
    sent: list[dict[str, Any]] = []
    original_post = MsalHttpClient.post

    def recording_post(self: MsalHttpClient, url: str, **kwargs: Any) -> requests.Response:
        sent.append(kwargs.get("data") or {})
        return original_post(self, url, **kwargs)

    monkeypatch.setattr(MsalHttpClient, "post", recording_post)
    outcome = refresh_token_redeem(
        application=application, refresh_token=refresh_token, audience="graph", tenant=demo.CONTOSO
    )
    assert isinstance(outcome, IssuedTokens), outcome  # the sandbox accepted the assertion

    [body] = sent  # MSAL hands the form to the HTTP client as a dict
    assertion = body["client_assertion"]
    assert "client_secret" not in body
    header = jwt.get_unverified_header(assertion)
    certificate = x509.load_pem_x509_certificate(demo.CERT_PATH.read_bytes())
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert header["alg"] == "PS256"
    assert header["x5t#S256"].rstrip("=") == _b64url(hashlib.sha256(der).digest())
    assert "x5t" not in header  # not the deprecated SHA-1 form
    # And it is signed by the certificate's key, with PSS.
    claims = jwt.decode(
        assertion,
        certificate.public_key(),  # type: ignore[arg-type]
        algorithms=["PS256"],
        options={"verify_aud": False},
    )
    assert claims["iss"] == claims["sub"] == demo.CLIENT_ID
