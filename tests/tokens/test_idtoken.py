"""The panel's own ID-token verification: everything MSAL does not check."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache

from sandbox import demo
from tokens.idtoken import IdTokenInvalid, id_token_verify, nonce_hash

RAW_NONCE = "raw-nonce-of-the-flow"


@pytest.fixture
def real_id_token(sandbox) -> tuple[str, str]:
    app = sandbox.msal_app()
    flow = app.initiate_auth_code_flow([demo.PARTNER_CENTER_SCOPE], redirect_uri=demo.REDIRECT_URI)
    result = app.acquire_token_by_auth_code_flow(flow, sandbox.sign_in(flow["auth_uri"], demo.ADMIN_AGENT))
    return result["id_token"], flow["nonce"]


@pytest.fixture
def verify(panel_settings):
    def run(
        token: str,
        *,
        nonce: str = RAW_NONCE,
        tenant: str | None = demo.CONTOSO,
        audience: str = demo.CLIENT_ID,
    ):
        return id_token_verify(
            id_token=token,
            authority_host=panel_settings.base_url,
            client_id=audience,
            raw_nonce=nonce,
            expected_tenant=tenant,
        )

    return run


@pytest.fixture
def own_key(panel_settings):
    """A key we control, published in place of the provider's JWKS (seeded into the JWKS cache),
    to forge tokens that are correctly signed but wrong in one claim."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="test-kid", use="sig")
    cache.set(f"jwks:{panel_settings.base_url}:{demo.CONTOSO}", {"keys": [jwk]}, 600)
    return key


def _claims(base_url: str, **overrides):
    now = int(time.time())
    claims = {
        "iss": f"{base_url}/{demo.CONTOSO}/v2.0",
        "aud": demo.CLIENT_ID,
        "tid": demo.CONTOSO,
        "oid": "c88b68ce-d2bf-4333-b44b-9fb78ab71490",
        "preferred_username": demo.ADMIN_AGENT,
        "nonce": nonce_hash(RAW_NONCE),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return claims


def test_a_real_sandbox_id_token_verifies(real_id_token, verify) -> None:
    token, nonce = real_id_token
    identity = verify(token, nonce=nonce)
    assert identity.tenant_id == demo.CONTOSO
    assert identity.upn == demo.ADMIN_AGENT


def test_a_token_from_another_tenant_than_expected_is_refused(real_id_token, verify) -> None:
    token, nonce = real_id_token
    with pytest.raises(IdTokenInvalid, match="different tenant"):
        verify(token, nonce=nonce, tenant=demo.FABRIKAM)


def test_a_wrong_nonce_is_refused(real_id_token, verify) -> None:
    token, _ = real_id_token
    with pytest.raises(IdTokenInvalid, match="nonce"):
        verify(token, nonce="another")


def test_alg_none_is_refused(panel_settings, verify) -> None:
    token = jwt.encode(_claims(panel_settings.base_url), key="", algorithm="none")
    with pytest.raises(IdTokenInvalid, match="RS256"):
        verify(token)


def test_an_unknown_signing_key_is_refused(panel_settings, verify) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        _claims(panel_settings.base_url), stranger, algorithm="RS256", headers={"kid": "nobody"}
    )
    with pytest.raises(IdTokenInvalid, match="does not publish"):
        verify(token)


def test_a_forged_signature_under_a_published_kid_is_refused(real_id_token, panel_settings, verify) -> None:
    token, nonce = real_id_token
    kid = jwt.get_unverified_header(token)["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(panel_settings.base_url), stranger, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(IdTokenInvalid, match="signature"):
        verify(forged)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example/x/v2.0"}, "unexpected authority"),
        ({"aud": "another-client"}, "another application"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
    ],
)
def test_wrong_issuer_audience_or_expiry_is_refused(
    panel_settings, own_key, verify, overrides, message
) -> None:
    token = jwt.encode(
        _claims(panel_settings.base_url, **overrides), own_key, algorithm="RS256", headers={"kid": "test-kid"}
    )
    with pytest.raises(IdTokenInvalid, match=message):
        verify(token)


def test_a_correctly_signed_token_with_our_key_passes_so_the_forgeries_above_fail_for_their_reason(
    panel_settings, own_key, verify
) -> None:
    token = jwt.encode(
        _claims(panel_settings.base_url), own_key, algorithm="RS256", headers={"kid": "test-kid"}
    )
    assert verify(token).object_id == "c88b68ce-d2bf-4333-b44b-9fb78ab71490"


def test_garbage_is_refused(verify) -> None:
    with pytest.raises(IdTokenInvalid, match="malformed"):
        verify("not-a-jwt")
