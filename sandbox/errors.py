"""Entra ID error answers, in the exact shape of entra-protocol.md 3.1 (token endpoint JSON) and 1.4
(authorize error redirects).

Endpoints raise `EntraError`; the server renders it with the request's correlation id (echoing the
client's `client-request-id`, as Entra does), a fresh trace id and the sandbox clock.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


class EntraError(Exception):
    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int = 400,
        suberror: str | None = None,
        claims: str | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.suberror = suberror
        self.claims = claims


def entra_timestamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def error_fields(err: EntraError, *, now: float, base_url: str, correlation_id: str | None) -> dict[str, Any]:
    """The JSON body of a token-endpoint error; also the fields of an authorize error redirect."""
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    timestamp = entra_timestamp(now)
    body: dict[str, Any] = {
        "error": err.error,
        "error_description": (
            f"AADSTS{err.code}: {err.message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [err.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{base_url}/error?code={err.code}",
    }
    if err.suberror:
        body["suberror"] = err.suberror
    if err.claims:
        body["claims"] = err.claims
    return body


# --- The errors the sandbox produces, one constructor each, so the texts stay in one place -------


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
    )


def duplicate_parameter(name: str) -> EntraError:
    return EntraError(
        "invalid_request",
        9000411,
        f"The request is not properly formatted. The parameter '{name}' is duplicated.",
    )


def invalid_parameter(name: str, value: str) -> EntraError:
    return EntraError(
        "invalid_request", 90015, f"Requested value '{value}' for the parameter '{name}' is not valid."
    )


def tenant_not_found(ref: str, *, error: str = "invalid_request") -> EntraError:
    # Discovery answers `invalid_tenant`, the token endpoint `invalid_request` (entra-protocol.md 3.1).
    return EntraError(
        error,
        90002,
        f"Tenant '{ref}' not found. Check to make sure you have the correct tenant ID and are signing into "
        "the correct cloud. Check with your subscription administrator, this may happen if there are no "
        "active subscriptions for the tenant.",
    )


def app_not_found(client_id: str, tenant_name: str) -> EntraError:
    return EntraError(
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented to "
        "by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    )


def invalid_grant_malformed() -> EntraError:
    return EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")


def consent_required(client_id: str, app_name: str, tenant_id: str, resource: str) -> EntraError:
    return EntraError(
        "invalid_grant",
        65001,
        f"The user or administrator has not consented to use the application with ID '{client_id}' named "
        f"'{app_name}' for the resource '{resource}' in tenant '{tenant_id}'. Send an interactive "
        "authorization request for this user and resource.",
        suberror="consent_required",
    )


def mfa_required(resource_app_id: str, *, v1: bool) -> EntraError:
    # v1/refresh answers interaction_required, v2 invalid_grant; both with suberror basic_action (3.3).
    return EntraError(
        "interaction_required" if v1 else "invalid_grant",
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        f"you must use multi-factor authentication to access '{resource_app_id}'.",
        suberror="basic_action",
        claims='{"access_token":{"capolids":{"essential":true,"values":["00000000-0000-0000-0000-00000000a576"]}}}',
    )


def mfa_registration_required(resource_app_id: str, *, v1: bool) -> EntraError:
    # AADSTS50079 UserStrongAuthEnrollmentRequired: MFA is required and the user has no method ("a
    # managed user needs to register security info", error-code reference); the wording is the one
    # Entra sends ("you must enroll in multi-factor authentication to access '<resource>'", quoted in
    # AzureAD/azure-activedirectory-library-for-nodejs#151), error and suberror as for 50076.
    return EntraError(
        "interaction_required" if v1 else "invalid_grant",
        50079,
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        f"you must enroll in multi-factor authentication to access '{resource_app_id}'.",
        suberror="basic_action",
        claims='{"access_token":{"capolids":{"essential":true,"values":["00000000-0000-0000-0000-00000000a576"]}}}',
    )


def blocked_by_conditional_access(*, v1: bool) -> EntraError:
    return EntraError(
        "interaction_required" if v1 else "invalid_grant",
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        suberror="message_only",
        claims='{"access_token":{"capolids":{"essential":true,"values":["00000000-0000-0000-0000-00000000b10c"]}}}',
    )


def app_disabled(client_id: str, app_name: str) -> EntraError:
    # AADSTS7000112 "UnauthorizedClientApplicationDisabled - The application is disabled" (error-code
    # reference); a tenant admin disabling the app's service principal there causes it.
    return EntraError("unauthorized_client", 7000112, f"Application '{client_id}'({app_name}) is disabled.")


def admin_consent_required(app_name: str) -> EntraError:
    # AADSTS90094 (error-code reference: AdminConsentRequired; Microsoft Learn "Unexpected error when
    # performing consent to an application" gives this text).
    return EntraError(
        "consent_required",
        90094,
        f"{app_name} needs permission to access resources in your organization that only an admin can grant. "
        "Please ask an admin to grant permission to this app before you can use it.",
    )
