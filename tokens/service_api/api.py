"""The service token API (`/api/v1/`): the CPV's own services ask for access tokens by key.

Endpoints are thin: authentication, scope and issuance live in `tokens.service_api.service_clients` and the
broker. Every refusal is an RFC 9457 problem (`application/problem+json`) whose `type` is stable;
docs/api.md lists them. No answer carries a stack trace, whatever DEBUG says.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.security import HttpBearer
from pydantic import field_validator

from tokens.audit import PURPOSE_MAX_LENGTH, Actor, purpose_validate
from tokens.issuance.broker import BrokerError
from tokens.models import AuditEvent, ServiceClient
from tokens.service_api.service_clients import (
    service_client_authenticate,
    service_client_rate_limit_check,
    service_client_token_get,
)

logger = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://sam-controlpanel.invalid/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# Stable problem code -> (status, title). The type URI is the base + the code with dashes.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed_request": (400, "The body is not JSON"),
    "method_not_allowed": (405, "The method is not allowed on this endpoint"),
    "request_too_large": (413, "The body is too large"),
    "invalid_request": (422, "The request is invalid"),
    "unauthenticated": (401, "The key is missing, unknown or disabled"),
    "address_not_allowed": (403, "The source address is not allowed for this key"),
    "audience_not_allowed": (403, "The audience is not allowed for this key"),
    "partner_not_allowed": (403, "The partner is not allowed for this key"),
    "audience_not_consented": (403, "The partner did not consent to this audience"),
    "customer_refused": (403, "The customer tenant refused the partner"),
    "gdap_relationship_inactive": (403, "The partner has no active GDAP relationship with the customer"),
    "unknown_partner": (404, "Unknown partner"),
    "no_grant": (404, "The partner has no grant"),
    "needs_renewal": (409, "The grant needs renewal by the partner"),
    "revoked": (409, "The grant is revoked"),
    "expired": (409, "The grant has expired"),
    "issuance_suspended": (423, "Token issuance is suspended"),
    "rate_limited": (429, "Too many requests"),
    "identity_provider_unavailable": (503, "The identity provider is unavailable"),
    "internal_error": (500, "Internal error"),
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before asking again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


class FieldError(Schema):
    loc: str
    msg: str


class Problem(Schema):
    """RFC 9457 problem details."""

    type: str = Field(examples=[f"{PROBLEM_TYPE_BASE}needs-renewal"])
    title: str
    status: int
    detail: str
    state: str | None = Field(None, description="409 only: the grant's state.")
    errors: list[FieldError] | None = Field(None, description="422 only: the fields at fault.")


class TokenRequest(Schema):
    partner_tenant_id: uuid.UUID = Field(description="The partner's Entra tenant id.")
    audience: str = Field(min_length=1, max_length=64, examples=["partner_center", "graph", "arm"])
    purpose: str = Field(
        min_length=1, max_length=PURPOSE_MAX_LENGTH, description="Why the token is needed; audited."
    )
    customer_tenant_id: uuid.UUID | None = Field(None, description="A customer tenant, for GDAP calls.")

    # In the schema, not only in the service, so that these 422s name their field like the others.
    @field_validator("purpose")
    @classmethod
    def purpose_is_printable_text(cls, value: str) -> str:
        return purpose_validate(value)

    @field_validator("audience")
    @classmethod
    def audience_is_configured(cls, value: str) -> str:
        if value not in settings.SAM_AUDIENCES:
            raise ValueError(f"unknown audience '{value}'")
        return value


class TokenResponse(Schema):
    access_token: str
    token_type: Literal["Bearer"]
    expires_on: int = Field(description="Unix time (seconds) at which the token expires.")
    audience: str
    scope: str


class Ping(Schema):
    status: Literal["ok"]
    client: str


class ServiceApi(NinjaAPI):
    def get_openapi_schema(self, **kwargs: Any) -> OpenAPISchema:
        """Ninja documents every answer as application/json: the problems are problem+json, and
        429 and 503 carry Retry-After."""
        schema = super().get_openapi_schema(**kwargs)
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            for status, answer in operation["responses"].items():
                if int(status) >= HTTPStatus.BAD_REQUEST and "content" in answer:
                    answer["content"] = {PROBLEM_CONTENT_TYPE: answer["content"]["application/json"]}
                if int(status) in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
                    answer["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
        return schema


class ServiceKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ServiceClient:
        client = service_client_authenticate(key=token, client_ip=request.META.get("REMOTE_ADDR"))
        service_client_rate_limit_check(client=client)
        return client


api = ServiceApi(
    title="SAM control panel service API",
    version="1",
    description="Access tokens for the CPV's own services. See docs/api.md.",
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url=None,
    auth=ServiceKeyAuth(),
)


def _problems(*statuses: int) -> dict[int, type[Problem]]:
    return dict.fromkeys(statuses, Problem)


def problem_response(
    code: str,
    detail: str,
    *,
    retry_after: int | None = None,
    errors: list[dict[str, str]] | None = None,
) -> HttpResponse:
    status, title = PROBLEMS[code]
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if status == HTTPStatus.CONFLICT:
        body["state"] = code
    if errors:
        body["errors"] = errors
    response = JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="sam-controlpanel"'
    return response


def _broker_error(request: HttpRequest, exc: BrokerError) -> HttpResponse:
    if exc.code not in PROBLEMS:  # a new refusal nobody mapped yet: loud in logs, opaque outside
        logger.error("unmapped refusal %s: %s", exc.code, exc.message)
        return problem_response("internal_error", "the request could not be completed")
    # Every 422 carries `errors` (docs/api.md), including the service's own checks of the body.
    errors = [{"loc": "body", "msg": exc.message}] if exc.code == "invalid_request" else None
    return problem_response(exc.code, exc.message, retry_after=exc.retry_after, errors=errors)


def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        # loc is ("body", <parameter>, <field>...): the field path is what the caller wrote.
        {"loc": ".".join(str(part) for part in error.get("loc", ())[2:]) or "body", "msg": error["msg"]}
        for error in exc.errors
    ]
    return problem_response("invalid_request", "the request does not match the schema", errors=errors)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        return problem_response("unauthenticated", "send Authorization: Bearer <key>")
    if exc.status_code == HTTPStatus.BAD_REQUEST:
        return problem_response("malformed_request", "the body could not be parsed as JSON")
    return JsonResponse(
        {"type": "about:blank", "title": HTTPStatus(exc.status_code).phrase, "status": exc.status_code},
        status=exc.status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # A body without Content-Length (chunked) that outgrew DATA_UPLOAD_MAX_MEMORY_SIZE while read;
    # a declared length over the API's limit is refused earlier, unread (tokens.service_api.api_edges).
    return problem_response("request_too_large", "the body is too large")


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("service API failure")
    return problem_response("internal_error", "the request could not be completed")


# Ninja annotates a handler as taking "the exception or its class"; it only ever passes instances.
api.add_exception_handler(BrokerError, _broker_error)  # type: ignore[arg-type]
api.add_exception_handler(ValidationError, _validation_error)  # type: ignore[arg-type]
api.add_exception_handler(HttpError, _http_error)  # type: ignore[arg-type]
api.add_exception_handler(RequestDataTooBig, _too_large)  # type: ignore[arg-type]
api.add_exception_handler(Exception, _unexpected)  # type: ignore[arg-type]


def _actor(request: HttpRequest, client: ServiceClient) -> Actor:
    request_id = request.headers.get("X-Request-ID", "")
    return Actor(
        type=AuditEvent.ActorType.SERVICE,
        id=client.name,
        client_ip=request.META.get("REMOTE_ADDR"),
        request_id=request_id if _REQUEST_ID.fullmatch(request_id) else uuid.uuid4().hex,
    )


@api.post(
    "/tokens",
    response={200: TokenResponse, **_problems(400, 401, 403, 404, 409, 413, 422, 423, 429, 503)},
    operation_id="token_issue",
    summary="Issue an access token for one partner and audience",
)
def token_issue(request: HttpRequest, payload: TokenRequest, response: HttpResponse) -> dict[str, Any]:
    client: ServiceClient = request.auth  # type: ignore[attr-defined]
    token = service_client_token_get(
        client=client,
        partner_tenant_id=payload.partner_tenant_id,
        audience=payload.audience,
        purpose=payload.purpose,
        customer_tenant_id=payload.customer_tenant_id,
        actor=_actor(request, client),
    )
    # RFC 6749 5.1: token responses are never cached by intermediaries.
    response["Cache-Control"] = "no-store"
    return {
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_on": int(token.expires_at.timestamp()),
        "audience": token.audience,
        "scope": token.scope,
    }


@api.get(
    "/ping",
    response={200: Ping, **_problems(401, 403, 429)},
    operation_id="ping",
    summary="Check a key, its address allow-list and its rate limit without asking for a token",
)
def ping(request: HttpRequest) -> dict[str, str]:
    client: ServiceClient = request.auth  # type: ignore[attr-defined]
    return {"status": "ok", "client": client.name}
