"""The sandbox's Key Vault data plane, driven by Microsoft's unmodified Azure SDK (azure-identity,
azure-keyvault-keys, azure-keyvault-secrets) configured only through their documented options, and
by raw requests for what the SDK would never send. Rows of docs/sandbox.md, section "Key Vault"."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import CertificateCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from sandbox import demo


def _credential(sandbox, *, tenant: str = demo.VENDOR_TENANT, client_id: str = demo.HOST_CLIENT_ID):
    return CertificateCredential(
        tenant,
        client_id,
        certificate_path=str(demo.HOST_IDENTITY_PATH),
        authority=sandbox.base_url,
        disable_instance_discovery=True,
        connection_verify=str(sandbox.ca_bundle),
    )


def _options(sandbox) -> dict:
    # The vault is not under vault.azure.net: the SDK's documented switch for that.
    return {"verify_challenge_resource": False, "connection_verify": str(sandbox.ca_bundle), "retry_total": 0}


def _crypto(sandbox, key_name: str, credential=None) -> CryptographyClient:
    kid = sandbox.control.keyvault()["keys"][key_name][-1]
    return CryptographyClient(kid, credential or _credential(sandbox), **_options(sandbox))


def test_wrap_and_unwrap_through_the_sdk(sandbox):
    crypto = _crypto(sandbox, demo.VAULT_WRAPPING_KEY)
    secret = os.urandom(32)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, secret)
    assert wrapped.encrypted_key != secret and len(wrapped.encrypted_key) == 256
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == secret
    operations = sandbox.control.keyvault()["operations"]
    assert operations["keys/unwrap"] == 1


def test_sign_ps256_verifies_with_the_registered_certificate(sandbox):
    crypto = _crypto(sandbox, demo.VAULT_APP_CERTIFICATE_KEY)
    digest = hashlib.sha256(b"header.payload").digest()
    signature = crypto.sign(SignatureAlgorithm.ps256, digest).signature
    public_key = load_pem_x509_certificate(demo.CERT_PATH.read_bytes()).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    # Verified with the app's certificate: the vault's key is the certificate's key, and PS256 is
    # RSASSA-PSS with SHA-256 and a 32-byte salt (RFC 7518 3.5).
    public_key.verify(
        signature,
        b"header.payload",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_get_key_answers_the_public_part_only(sandbox):
    client = KeyClient(sandbox.base_url, _credential(sandbox), **_options(sandbox))
    key = client.get_key(demo.VAULT_APP_CERTIFICATE_KEY)
    jwk = vars(key.key)
    assert key.key_type == "RSA" and jwk["n"] and jwk["e"]
    assert jwk.get("d") is None and jwk.get("p") is None  # a vault never hands out the private key
    assert key.properties.exportable is False


def test_secret_get_through_the_sdk(sandbox):
    client = SecretClient(sandbox.base_url, _credential(sandbox), **_options(sandbox))
    assert client.get_secret(demo.VAULT_APP_SECRET).value == demo.CLIENT_SECRET


def test_unauthenticated_call_gets_the_challenge(sandbox):
    response = sandbox.http().get(
        f"{sandbox.base_url}/secrets/{demo.VAULT_APP_SECRET}?api-version=7.5", timeout=10
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{sandbox.base_url}/{demo.VENDOR_TENANT}", resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def test_api_version_is_required(sandbox):
    response = sandbox.http().get(f"{sandbox.base_url}/secrets/{demo.VAULT_APP_SECRET}", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"


def _token(sandbox, scope: str, tenant: str = demo.VENDOR_TENANT) -> str:
    return _credential(sandbox, tenant=tenant).get_token(scope).token


def test_tokens_for_another_audience_or_tenant_are_refused(sandbox):
    url = f"{sandbox.base_url}/secrets/{demo.VAULT_APP_SECRET}?api-version=7.5"
    graph = _token(sandbox, demo.GRAPH_DEFAULT_SCOPE)
    response = sandbox.http().get(url, headers={"Authorization": f"Bearer {graph}"}, timeout=10)
    assert response.status_code == 401 and "AKV10022" in response.json()["error"]["message"]
    assert "WWW-Authenticate" in response.headers
    # The host identity is in the vendor tenant only: a token from a partner tenant does not exist for
    # it, so ask for one for the demo app in Contoso instead.
    contoso = sandbox.msal_app().acquire_token_for_client([demo.KEY_VAULT_SCOPE])["access_token"]
    response = sandbox.http().get(url, headers={"Authorization": f"Bearer {contoso}"}, timeout=10)
    assert response.status_code == 401 and "AKV10032" in response.json()["error"]["message"]


def test_principal_without_a_role_gets_403_forbidden_by_rbac(sandbox):
    sandbox.control.keyvault_unassign(
        demo.HOST_CLIENT_ID, "Key Vault Crypto Service Encryption User", "keys/keyset-wrapping"
    )
    crypto = _crypto(sandbox, demo.VAULT_WRAPPING_KEY)
    with pytest.raises(HttpResponseError) as raised:
        crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"\0" * 256)
    assert raised.value.status_code == 403
    assert raised.value.error is not None and raised.value.error.code == "Forbidden"
    assert "Microsoft.KeyVault/vaults/keys/unwrap/action" in str(raised.value.error.message)
    # A role on another object reaches only that object: the secret stays readable.
    client = SecretClient(sandbox.base_url, _credential(sandbox), **_options(sandbox))
    assert client.get_secret(demo.VAULT_APP_SECRET).value == demo.CLIENT_SECRET


def test_a_role_without_sign_refuses_sign(sandbox):
    # Crypto Service Encryption User reads and wraps, it does not sign.
    sandbox.control.keyvault_unassign(
        demo.HOST_CLIENT_ID, "Key Vault Crypto User", "keys/sam-app-certificate"
    )
    sandbox.control.keyvault_assign(
        demo.HOST_CLIENT_ID, "Key Vault Crypto Service Encryption User", "keys/sam-app-certificate"
    )
    with pytest.raises(HttpResponseError) as raised:
        _crypto(sandbox, demo.VAULT_APP_CERTIFICATE_KEY).sign(SignatureAlgorithm.ps256, b"\1" * 32)
    assert raised.value.status_code == 403
    assert raised.value.error is not None and "keys/sign/action" in str(raised.value.error.message)


def test_unknown_key_is_404_after_authorisation(sandbox):
    client = KeyClient(sandbox.base_url, _credential(sandbox), **_options(sandbox))
    with pytest.raises(HttpResponseError) as raised:
        client.get_key("no-such-key")
    assert raised.value.status_code == 403  # no role reaches it: Key Vault answers 403 before 404
    sandbox.control.keyvault_assign(demo.HOST_CLIENT_ID, "Key Vault Reader", "/")
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_key("no-such-key")
    assert missing.value.error is not None and missing.value.error.code == "KeyNotFound"


def test_rotated_key_keeps_old_versions_usable(sandbox):
    old = _crypto(sandbox, demo.VAULT_WRAPPING_KEY)
    wrapped = old.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32).encrypted_key
    new_kid = sandbox.control.keyvault_rotate_key(demo.VAULT_WRAPPING_KEY)
    assert sandbox.control.keyvault()["keys"][demo.VAULT_WRAPPING_KEY][-1] == new_kid
    assert old.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key == b"k" * 32
    new = CryptographyClient(new_kid, _credential(sandbox), **_options(sandbox))
    with pytest.raises(HttpResponseError) as raised:
        new.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    assert raised.value.status_code == 400


def test_bad_operation_input_is_400(sandbox):
    token = _token(sandbox, demo.KEY_VAULT_SCOPE)
    kid = sandbox.control.keyvault()["keys"][demo.VAULT_APP_CERTIFICATE_KEY][-1]
    http = sandbox.http()
    headers = {"Authorization": f"Bearer {token}"}
    cases = [
        ("sign", b"not json"),
        ("sign", b'{"alg": "PS256"}'),
        ("sign", b'{"alg": "ES256", "value": "AAAA"}'),
        ("sign", b'{"alg": "PS256", "value": "' + base64.urlsafe_b64encode(b"short").rstrip(b"=") + b'"}'),
        ("wrapkey", b'{"alg": "A256KW", "value": "AAAA"}'),
        ("unwrapkey", b'{"alg": "RSA-OAEP-256", "value": "AAAA"}'),
    ]
    for operation, body in cases:
        response = http.post(f"{kid}/{operation}?api-version=7.5", data=body, headers=headers, timeout=10)
        assert response.status_code == 400, (operation, body)
        assert response.json()["error"]["code"] == "BadParameter"


def test_vault_fault_reaches_the_sdk(sandbox):
    sandbox.control.add_fault("http_503", endpoint="keyvault", count=5)
    with pytest.raises(HttpResponseError) as raised:
        _crypto(sandbox, demo.VAULT_WRAPPING_KEY).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"\0" * 256)
    assert raised.value.status_code == 503


def test_credential_of_an_unknown_app_fails_at_entra(sandbox):
    credential = _credential(sandbox, client_id="11111111-2222-3333-4444-555555555555")
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(demo.KEY_VAULT_SCOPE)


def test_an_app_has_a_service_principal_in_its_home_tenant_only(sandbox):
    assert _token(sandbox, demo.KEY_VAULT_SCOPE)  # registered in the vendor tenant: no consent needed there
    with pytest.raises(ClientAuthenticationError) as raised:
        _token(sandbox, demo.KEY_VAULT_SCOPE, tenant=demo.CONTOSO)
    assert "AADSTS700016" in str(raised.value)
