"""The Azure Key Vault data plane the panel uses, on the sandbox's own host: keys (get, wrapKey,
unwrapKey, sign) and secrets (get), authorised by Azure RBAC role assignments.

The vault is the sandbox's base URL (`https://127.0.0.1:8443`), so a key id reads
`https://127.0.0.1:8443/keys/<name>/<version>` as `https://<vault>.vault.azure.net/keys/...` does.
What each answer follows is a row of the conformance table in docs/sandbox.md:

* Every call needs `api-version` and a bearer token; without a token the answer is 401 with the
  challenge `Bearer authorization="<authority>/<vault tenant>", resource="https://vault.azure.net"`,
  which the Azure SDK's ChallengeAuthPolicy answers by asking its credential for a token.
* Tokens must be Entra's, for `https://vault.azure.net` (its URI or app id), issued in the vault's
  tenant, not expired (401 `Unauthorized` with an AKV code otherwise, and the challenge again).
* A principal without a role that grants the operation's data action on the key, the secret or the
  vault gets 403 `Forbidden` (inner `ForbiddenByRbac`) naming caller, action and resource; only then
  does an unknown name answer 404 (`KeyNotFound`, `SecretNotFound`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.catalog import KEY_VAULT
from sandbox.keys import b64url
from sandbox.resources import Rejected, _claims
from sandbox.vault_state import KeyVersion
from sandbox.web import apply_fault, ctx

# The RBAC data action each operation needs, as Key Vault names it in its 403 message.
DATA_ACTIONS = {
    "keys/read": "Microsoft.KeyVault/vaults/keys/read",
    "keys/wrap": "Microsoft.KeyVault/vaults/keys/wrap/action",
    "keys/unwrap": "Microsoft.KeyVault/vaults/keys/unwrap/action",
    "keys/sign": "Microsoft.KeyVault/vaults/keys/sign/action",
    "secrets/get": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
}
WRAP_ALGORITHMS = {"RSA-OAEP-256": hashes.SHA256, "RSA-OAEP": hashes.SHA1}
SIGN_ALGORITHMS = {"PS256": 32, "RS256": 32}
KEY_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]


def _b64url_decode(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        return None


def _int_b64(number: int) -> str:
    return b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


# --- answers ------------------------------------------------------------------------------------


def kv_error(
    status: int, code: str, message: str, *, inner: str | None = None, headers: Any = None
) -> Response:
    """Key Vault's error body: {"error": {"code", "message"[, "innererror": {"code"}]}}."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _challenge(request: Request) -> dict[str, str]:
    context = ctx(request)
    tenant = context.state.vault.config.tenant_id
    return {
        "WWW-Authenticate": f'Bearer authorization="{context.base_url}/{tenant}", resource="{KEY_VAULT.uri}"'
    }


def _unauthorized(request: Request, message: str) -> Response:
    return kv_error(401, "Unauthorized", message, headers=_challenge(request))


@dataclass(frozen=True)
class Caller:
    oid: str
    appid: str
    tid: str


async def _caller(request: Request) -> Caller | Response:
    context = ctx(request)
    context.state.counters.requests_by_endpoint["keyvault"] += 1
    fault = await apply_fault(request, "keyvault")
    if fault is not None:
        return fault
    if not request.query_params.get("api-version"):
        # Key Vault refuses a call without api-version; its exact wording is UNCERTAIN.
        return kv_error(400, "BadParameter", "The 'api-version' query parameter is missing or empty.")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return _unauthorized(request, "AKV10000: Request is missing a Bearer or PoP token.")
    try:
        claims, tenant = _claims(request, KEY_VAULT)
    except Rejected as exc:
        if "audience" in exc.message:
            return _unauthorized(request, f"AKV10022: Invalid audience. Expected {KEY_VAULT.uri}.")
        return _unauthorized(request, f"AKV10032: {exc.message}")
    vault_tenant = context.state.vault.config.tenant_id
    if tenant.id != vault_tenant:
        return _unauthorized(
            request, f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{vault_tenant}/."
        )
    return Caller(oid=str(claims.get("oid", "")), appid=str(claims.get("appid", "")), tid=tenant.id)


def _forbidden(request: Request, caller: Caller, action: str, scope: str) -> Response:
    context = ctx(request)
    resource = (
        f"/subscriptions/sandbox/resourcegroups/sandbox/providers/microsoft.keyvault/vaults/sandbox/{scope}"
    )
    message = (
        "Caller is not authorized to perform action on resource.\r\n"
        "If role assignments, deny assignments or role definitions were changed recently, please observe "
        "propagation time.\r\n"
        f"Caller: appid={caller.appid};oid={caller.oid};iss=https://sts.windows.net/{caller.tid}/\r\n"
        f"Action: '{DATA_ACTIONS[action]}'\r\n"
        f"Resource: '{resource}'\r\n"
        "Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n"
        f"Vault: sandbox;location={context.base_url}\r\n"
    )
    return kv_error(403, "Forbidden", message, inner="ForbiddenByRbac")


async def _authorised(request: Request, action: str, scope: str) -> Caller | Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    if not ctx(request).state.vault.allowed(caller.oid, action, scope):
        return _forbidden(request, caller, action, scope)
    ctx(request).state.vault.operations[action] += 1
    return caller


def _key_version(request: Request) -> KeyVersion | Response:
    vault = ctx(request).state.vault
    name = request.path_params["name"]
    version = request.path_params.get("version") or ""
    versions = vault.keys.get(name, [])
    found = (
        versions[-1]
        if versions and not version
        else next((v for v in versions if v.version == version), None)
    )
    if found is None:
        shown = f"{name}/{version}" if version else name
        return kv_error(404, "KeyNotFound", f"A key with (name/id) {shown} was not found in this key vault.")
    return found


def _kid(request: Request, key: KeyVersion) -> str:
    return f"{ctx(request).base_url}/keys/{request.path_params['name']}/{key.version}"


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def get_key(request: Request) -> Response:
    caller = await _authorised(request, "keys/read", f"keys/{request.path_params['name']}")
    if isinstance(caller, Response):
        return caller
    key = _key_version(request)
    if isinstance(key, Response):
        return key
    public = key.private_key.public_key().public_numbers()
    return JSONResponse(
        {
            "key": {
                "kid": _kid(request, key),
                "kty": "RSA",
                "key_ops": KEY_OPS,
                "n": _int_b64(public.n),
                "e": _int_b64(public.e),
            },
            "attributes": {
                "enabled": True,
                "created": key.created,
                "updated": key.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
                "exportable": False,
            },
        }
    )


async def _key_operation(request: Request, action: str) -> tuple[KeyVersion, str, bytes] | Response:
    """Authorise, find the key, and read {"alg", "value"} of a key operation."""
    caller = await _authorised(request, action, f"keys/{request.path_params['name']}")
    if isinstance(caller, Response):
        return caller
    key = _key_version(request)
    if isinstance(key, Response):
        return key
    body = await _json_body(request)
    if body is None:
        return kv_error(400, "BadParameter", "The request body is not a JSON object.")
    value = _b64url_decode(body.get("value"))
    alg = body.get("alg")
    if not isinstance(alg, str) or not alg:
        return kv_error(400, "BadParameter", "Property 'alg' is required.")
    if value is None:
        return kv_error(400, "BadParameter", "Property 'value' is required and must be base64url.")
    return key, alg, value


def _oaep(alg: str) -> padding.OAEP:
    hash_type = WRAP_ALGORITHMS[alg]
    return padding.OAEP(mgf=padding.MGF1(hash_type()), algorithm=hash_type(), label=None)


async def _wrap_operation(request: Request, action: str) -> tuple[KeyVersion, str, bytes] | Response:
    parsed = await _key_operation(request, action)
    if not isinstance(parsed, Response) and parsed[1] not in WRAP_ALGORITHMS:
        return kv_error(400, "BadParameter", f"Algorithm '{parsed[1]}' is not supported for key type RSA.")
    return parsed


async def wrap_key(request: Request) -> Response:
    parsed = await _wrap_operation(request, "keys/wrap")
    if isinstance(parsed, Response):
        return parsed
    key, alg, value = parsed
    try:
        wrapped = key.private_key.public_key().encrypt(value, _oaep(alg))
    except ValueError:
        return kv_error(400, "BadParameter", "The value is too long for this key and algorithm.")
    return JSONResponse({"kid": _kid(request, key), "value": b64url(wrapped)})


async def unwrap_key(request: Request) -> Response:
    parsed = await _wrap_operation(request, "keys/unwrap")
    if isinstance(parsed, Response):
        return parsed
    key, alg, value = parsed
    try:
        plain = key.private_key.decrypt(value, _oaep(alg))
    except (ValueError, InvalidKey):
        # Key Vault's wording for a value it cannot unwrap is UNCERTAIN: a 400, never the key.
        return kv_error(400, "BadParameter", "The value could not be unwrapped with this key version.")
    return JSONResponse({"kid": _kid(request, key), "value": b64url(plain)})


async def sign(request: Request) -> Response:
    parsed = await _key_operation(request, "keys/sign")
    if isinstance(parsed, Response):
        return parsed
    key, alg, digest = parsed
    if alg not in SIGN_ALGORITHMS:
        return kv_error(400, "BadParameter", f"Algorithm '{alg}' is not supported for key type RSA.")
    if len(digest) != SIGN_ALGORITHMS[alg]:
        return kv_error(400, "BadParameter", f"The digest length does not match algorithm {alg} (SHA-256).")
    pad: padding.AsymmetricPadding = (
        # RFC 7518 3.5: PS256 uses MGF1 with SHA-256 and a salt as long as the hash.
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if alg == "PS256"
        else padding.PKCS1v15()
    )
    signature = key.private_key.sign(digest, pad, Prehashed(hashes.SHA256()))
    return JSONResponse({"kid": _kid(request, key), "value": b64url(signature)})


async def get_secret(request: Request) -> Response:
    name = request.path_params["name"]
    caller = await _authorised(request, "secrets/get", f"secrets/{name}")
    if isinstance(caller, Response):
        return caller
    versions = ctx(request).state.vault.secrets.get(name, [])
    wanted = request.path_params.get("version") or ""
    found = (
        versions[-1] if versions and not wanted else next((v for v in versions if v.version == wanted), None)
    )
    if found is None:
        return kv_error(
            404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
        )
    return JSONResponse(
        {
            "value": found.value,
            "id": f"{ctx(request).base_url}/secrets/{name}/{found.version}",
            "attributes": {
                "enabled": True,
                "created": found.created,
                "updated": found.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }
    )
