"""Client authentication at the token endpoint: client_secret (body or HTTP Basic) or a client
assertion (a JWT signed with a registered certificate; entra-protocol.md 2.1).

Codes where Entra's exact answer is UNCERTAIN (assertion audience mismatch and jti replay) use
AADSTS50013 "invalid assertion", the documented generic code for a bad assertion.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from urllib.parse import unquote

import jwt

from sandbox.directory import App
from sandbox.errors import (
    EntraError,
    app_not_found,
    duplicate_parameter,
    invalid_grant_malformed,
    missing_parameter,
)
from sandbox.keys import b64url
from sandbox.state import SandboxState
from sandbox.web import Params

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300


@dataclass(frozen=True)
class AuthenticatedClient:
    app: App
    appidacr: str  # "1" secret, "2" certificate (entra-protocol.md 5.3)


def _invalid_client(code: int, message: str) -> EntraError:
    return EntraError("invalid_client", code, message, status=401)


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_grant_malformed() from exc
    return unquote(user), unquote(password)


def authenticate_client(
    state: SandboxState,
    params: Params,
    *,
    authorization: str | None,
    tenant_name: str,
    audiences: set[str],
) -> AuthenticatedClient:
    """`audiences`: the token endpoint URLs an assertion's `aud` may name for this request."""
    basic = _basic(authorization)
    client_id = params.get("client_id")
    if basic and client_id and basic[0] != client_id:
        raise EntraError("invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
    client_id = client_id or (basic[0] if basic else None)
    if client_id is None:
        raise missing_parameter("client_id")
    app = state.directory.apps.get(client_id.lower())
    if app is None:
        raise app_not_found(client_id, tenant_name)
    secret = params.get("client_secret")
    if basic and secret:
        raise duplicate_parameter("client_secret")
    secret = secret or (basic[1] if basic else None)
    assertion = params.get("client_assertion")
    if secret and assertion:
        raise EntraError("invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
    if secret:
        return AuthenticatedClient(app, _check_secret(state, app, secret))
    if assertion:
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise missing_parameter("client_assertion_type")
        _check_assertion(state, app, assertion, audiences)
        return AuthenticatedClient(app, "2")
    raise _invalid_client(
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )


def _check_secret(state: SandboxState, app: App, secret: str) -> str:
    status = state.secret_matches(app, secret)
    if status == "expired":
        raise _invalid_client(
            7000222,
            f"The provided client secret keys for app '{app.client_id}' are expired. Visit the Azure "
            "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using "
            "certificate credentials for added security: https://aka.ms/certCreds.",
        )
    if status == "wrong":
        raise _invalid_client(
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
        )
    return "1"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")


def _check_assertion(state: SandboxState, app: App, assertion: str, audiences: set[str]) -> None:
    malformed = EntraError("invalid_request", 50027, "JWT token is invalid or malformed.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise malformed from exc
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise malformed
    thumbprint_header = "x5t#S256" if header.get("x5t#S256") else "x5t"
    thumbprint = str(header.get(thumbprint_header) or "")
    # MSAL pads its base64url thumbprint with "="; Entra accepts both forms.
    cert = next(
        (
            c
            for c in app.certificates
            if thumbprint.rstrip("=") == b64url(c.sha256 if thumbprint_header == "x5t#S256" else c.sha1)
        ),
        None,
    )
    if cert is None:
        raise _invalid_client(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{thumbprint}']",
        )
    try:
        claims = jwt.decode(
            assertion,
            cert.cert.public_key(),  # type: ignore[arg-type]
            algorithms=[alg],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise _invalid_client(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature value did "
            "not match the expected signature value.]",
        ) from exc
    except jwt.PyJWTError as exc:
        raise malformed from exc
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise _invalid_client(
            700021, "Client assertion application identifier doesn't match 'client_id' parameter."
        )
    if claims.get("aud") not in audiences:
        raise _invalid_client(
            50013,
            f"Assertion audience claim does not match the required value. The audience in the assertion was "
            f"'{claims.get('aud')}' and the expected audience is '{sorted(audiences)[0]}'.",
        )
    now = state.now()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise malformed
    if exp + CLOCK_SKEW < now or nbf - CLOCK_SKEW > now:
        raise _invalid_client(
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion "
            f"valid from {_iso(nbf)}, expiry time of assertion {_iso(exp)}.",
        )
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise malformed
    if len(state.assertion_jtis) > 4096:  # purge expired jtis now and then, not on every request
        state.assertion_jtis = {j: e for j, e in state.assertion_jtis.items() if e + CLOCK_SKEW >= now}
    key = f"{app.client_id}:{jti}"
    if key in state.assertion_jtis:
        raise _invalid_client(
            50013, f"The client assertion with jti '{jti}' was already used; assertions are single-use."
        )
    state.assertion_jtis[key] = float(exp)
    # Recorded for tests: which form of assertion the client sent (control API `client-assertions`).
    state.assertion_log.append(
        {"client_id": app.client_id, "alg": alg, "thumbprint_header": thumbprint_header, "at": now}
    )
