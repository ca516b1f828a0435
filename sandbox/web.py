"""Request/response plumbing shared by the endpoints: the per-process context, parameter parsing
with Entra's missing/duplicate errors, Entra-shaped JSON answers, and fault injection."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from sandbox.errors import EntraError, duplicate_parameter, error_fields, missing_parameter
from sandbox.keys import SigningKey
from sandbox.signing import Signer
from sandbox.state import SandboxState
from sandbox.tokens import Minter

# Headers Entra sends on every token response (entra-protocol.md 2.1).
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1"}


@dataclass
class Context:
    state: SandboxState
    key: SigningKey
    minter: Minter
    signer: Signer
    base_url: str


def ctx(request: Request) -> Context:
    context: Context = request.app.state.sandbox
    return context


class Params:
    """Query or form parameters. Empty values count as missing; repeated names are refused."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    @classmethod
    def from_body(cls, body: bytes) -> Params:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        return cls(parse_qsl(text, keep_blank_values=True))

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise duplicate_parameter(name)
        return values[0] or None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise missing_parameter(name)
        return value

    def first(self, name: str) -> str | None:
        """The first value, for echoing (`state`) or counting, never raising."""
        values = self._values.get(name)
        return values[0] if values else None

    def duplicated(self) -> str | None:
        return next((name for name, values in self._values.items() if len(values) > 1), None)

    def single_values(self) -> dict[str, str]:
        return {name: values[0] for name, values in self._values.items()}


def entra_json(
    body: dict[str, Any], *, status: int = 200, code: int = 0, headers: dict[str, str] | None = None
) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={
            **NO_STORE,
            "x-ms-clitelem": f"1,{code},0,,",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )
    return response


def entra_error(request: Request, err: EntraError) -> Response:
    context = ctx(request)
    body = error_fields(
        err,
        now=context.state.now(),
        base_url=context.base_url,
        correlation_id=request.headers.get("client-request-id"),
    )
    return entra_json(body, status=err.status, code=err.code, headers={"x-ms-request-id": body["trace_id"]})


TRANSPORT_KEY = "sandbox.transport"


class _DropResponse(Response):
    """Abort the TCP connection without answering (the server puts its transport in the scope)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[TRANSPORT_KEY].abort()
        # Let the server see the connection is gone, so it does not answer a 500 in our place.
        await asyncio.sleep(0.01)


async def apply_fault(request: Request, endpoint: str) -> Response | None:
    """Answer with the injected fault for this endpoint, if one is active; None to proceed normally."""
    context = ctx(request)
    fault = context.state.faults.take(endpoint)
    if fault is None:
        return None
    context.state.counters.faults_injected[fault.kind] += 1
    if fault.delay:
        generation = context.state.generation
        await asyncio.sleep(fault.delay)
        if context.state.generation != generation:  # reset meanwhile: this request is of the old state
            return _DropResponse()
    if fault.kind in ("latency", "timeout"):
        return None
    if fault.kind == "drop":
        return _DropResponse()
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.kind == "http_429":
        # Entra's 429 body is plain text, not JSON (entra-protocol.md 3.4).
        return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)
    err = (
        EntraError(
            "server_error",
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
            status=500,
        )
        if fault.kind == "http_500"
        else EntraError(
            "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.", status=503
        )
    )
    response = entra_error(request, err)
    response.headers.update(headers)
    return response


def json_error(status: int, error: str, message: str) -> JSONResponse:
    """Errors of the sandbox's own control API (not Entra-shaped; documented in docs/sandbox.md)."""
    return JSONResponse({"error": error, "message": message}, status_code=status)
