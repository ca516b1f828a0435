"""The panel's own ID-token verification: everything MSAL does not check."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.test import override_settings

from sandbox import demo
from tests.fixtures.misbehaving_https import Answer, MisbehavingServer
from tokens.issuance.idtoken import IdTokenInvalid, SigningKeysUnavailable, id_token_verify, nonce_hash

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


def _signed(base_url: str, key, **overrides) -> str:
    return jwt.encode(_claims(base_url, **overrides), key, algorithm="RS256", headers={"kid": "test-kid"})


# --- tid is a GUID before it is put into a URL ----------------------------------------------------


@pytest.mark.parametrize(
    "tid",
    [
        "organizations",
        "contosopartner.onmicrosoft.com",
        "../../evil.example/x",
        f"{demo.CONTOSO}/../../other",
        f"{{{demo.CONTOSO}}}",  # braces: uuid.UUID would accept it
        f"urn:uuid:{demo.CONTOSO}",
        123,
        None,
    ],
)
def test_a_tid_that_is_not_a_guid_is_refused_before_any_request(panel_settings, own_key, verify, tid) -> None:
    cache.clear()  # no keys cached: any lookup would have to reach the sandbox
    panel_settings.control.clear_counters()
    token = _signed(panel_settings.base_url, own_key, tid=tid)
    with pytest.raises(IdTokenInvalid, match="tid is not a GUID"):
        verify(token, tenant=None)
    assert panel_settings.control.counters()["requests_by_endpoint"].get("discovery", 0) == 0


def test_an_oid_that_is_not_a_guid_is_refused(panel_settings, own_key, verify) -> None:
    with pytest.raises(IdTokenInvalid, match="oid"):
        verify(_signed(panel_settings.base_url, own_key, oid="not-a-guid"))


# --- audience: one aud that is us, or a list with azp = us --------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": [demo.CLIENT_ID, "another-client"]}, "several audiences and no authorized party"),
        ({"aud": [demo.CLIENT_ID]}, "several audiences and no authorized party"),
        (
            {"aud": [demo.CLIENT_ID, "another-client"], "azp": "another-client"},
            r"another application \(azp\)",
        ),
        ({"azp": "another-client"}, r"another application \(azp\)"),
        ({"aud": ["another-client", "a-third"], "azp": demo.CLIENT_ID}, "another application"),
        ({"aud": 42}, "another application"),
    ],
)
def test_an_audience_that_is_not_only_us_is_refused(
    panel_settings, own_key, verify, overrides, message
) -> None:
    with pytest.raises(IdTokenInvalid, match=message):
        verify(_signed(panel_settings.base_url, own_key, **overrides))


def test_an_audience_list_with_us_as_authorized_party_passes(panel_settings, own_key, verify) -> None:
    token = _signed(
        panel_settings.base_url, own_key, aud=[demo.CLIENT_ID, "another-client"], azp=demo.CLIENT_ID
    )
    assert verify(token).tenant_id == demo.CONTOSO


# --- the authority's discovery document and key set, whatever they answer -----------------------

DISCOVERY_PATH = f"/{demo.CONTOSO}/v2.0/.well-known/openid-configuration"


@pytest.fixture
def verify_against(misbehaving_https: MisbehavingServer):
    """Verify a well-formed token (valid tid, kid) whose keys must come from the misbehaving server."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def run(discovery: Answer, keys: Answer | None = None):
        misbehaving_https.answers[DISCOVERY_PATH] = discovery
        if keys is not None:
            misbehaving_https.answers["/keys"] = keys
        cache.clear()
        with override_settings(IDENTITY_CA_BUNDLE=str(misbehaving_https.ca_bundle)):
            return id_token_verify(
                id_token=_signed(misbehaving_https.base_url, key),
                authority_host=misbehaving_https.base_url,
                client_id=demo.CLIENT_ID,
                raw_nonce=RAW_NONCE,
            )

    return run


def _discovery(server: MisbehavingServer, **members) -> Answer:
    return Answer(body=json.dumps({"issuer": "x", "jwks_uri": f"{server.base_url}/keys", **members}))


@pytest.mark.parametrize(
    ("discovery", "message"),
    [
        (
            Answer(body="<html>Service Unavailable</html>", content_type="text/html"),
            "discovery document is not JSON",
        ),
        (Answer(body="[1, 2]"), "discovery document is not a JSON object"),
        (Answer(body='{"issuer": "x"}'), "names no https jwks_uri"),
        (Answer(body='{"jwks_uri": 42}'), "names no https jwks_uri"),
        (Answer(body='{"jwks_uri": "http://127.0.0.1:1/keys"}'), "names no https jwks_uri"),
        (Answer(status=404, body="{}"), "discovery document answered HTTP 404"),
        (Answer(status=302, body=""), "discovery document answered HTTP 302"),
    ],
)
def test_a_malformed_discovery_document_is_a_clear_failure(verify_against, discovery, message) -> None:
    with pytest.raises(SigningKeysUnavailable, match=message) as raised:
        verify_against(discovery)
    assert raised.value.transient is False


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (Answer(body="not json at all", content_type="text/plain"), "key set is not JSON"),
        (Answer(body='"keys"'), "key set is not a JSON object"),
        (Answer(body="{}"), "key set has no list of keys"),
        (Answer(body='{"keys": "test-kid"}'), "key set has no list of keys"),
        (Answer(body='{"keys": [1, 2]}'), "key set has no list of keys"),
        (Answer(body='{"keys": [{"kid": "test-kid", "kty": "RSA", "n": 5, "e": "AQAB"}]}'), "cannot read"),
        (Answer(body='{"keys": [{"kid": "test-kid", "kty": "banana"}]}'), "cannot read"),
        (Answer(status=404, body="{}"), "key set answered HTTP 404"),
    ],
)
def test_a_malformed_key_set_is_a_clear_failure(misbehaving_https, verify_against, keys, message) -> None:
    with pytest.raises(SigningKeysUnavailable, match=message) as raised:
        verify_against(_discovery(misbehaving_https), keys)
    assert raised.value.transient is False


def test_a_well_formed_key_set_without_the_kid_is_an_unknown_key_not_a_crash(
    misbehaving_https, verify_against
) -> None:
    with pytest.raises(IdTokenInvalid, match="does not publish") as raised:
        verify_against(_discovery(misbehaving_https), Answer(body='{"keys": []}'))
    assert not isinstance(raised.value, SigningKeysUnavailable)
    assert misbehaving_https.requested.count("/keys") == 2  # the cached set, then one refetch


@pytest.mark.parametrize(
    ("kind", "message"), [("http_503", "HTTP 503"), ("http_429", "HTTP 429"), ("drop", "did not answer")]
)
def test_an_authority_that_does_not_answer_for_its_keys_is_a_transient_failure(
    panel_settings, real_id_token, verify, kind, message
) -> None:
    token, nonce = real_id_token
    cache.clear()
    panel_settings.control.add_fault(kind, endpoint="discovery", count=1)
    with pytest.raises(SigningKeysUnavailable, match=message) as raised:
        verify(token, nonce=nonce)
    assert raised.value.transient is True
    assert verify(token, nonce=nonce).tenant_id == demo.CONTOSO  # and it recovers


def test_an_unknown_tenant_at_discovery_is_refused(panel_settings, own_key, verify) -> None:
    """Also the counterpart of the non-GUID test above: a GUID tid does reach discovery."""
    cache.clear()
    panel_settings.control.clear_counters()
    token = _signed(panel_settings.base_url, own_key, tid="00000000-0000-0000-0000-00000000dead")
    with pytest.raises(IdTokenInvalid, match="does not know this tenant"):
        verify(token, tenant=None)
    assert panel_settings.control.counters()["requests_by_endpoint"]["discovery"] == 1
