"""The service API's edges, answered before (or instead of) an endpoint, all as RFC 9457 problems:

- a body larger than SERVICE_API_MAX_BODY_BYTES: 413, before it is read;
- a method an endpoint does not serve: 405 (with Allow), not Django's HTML page;
- an address that sent too many unauthenticated requests: 429 with Retry-After, before the key is
  even looked at, for the rest of the minute. A key is 256 random bits, so this is not what stops
  guessing; it keeps a scanner from costing a key lookup per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

API_PREFIX = "/api/"
WINDOW_SECONDS = 60


def _window_key(address: str, now: float) -> tuple[str, int]:
    window = int(now // WINDOW_SECONDS)
    return f"svc-unauth:{address}:{window}", (window + 1) * WINDOW_SECONDS - int(now)


def unauthenticated_attempt_count(*, address: str, now: float | None = None) -> None:
    """Count one refused (401) request from this address in its one-minute window."""
    key, _ = _window_key(address, time.time() if now is None else now)
    if not cache.add(key, 1, timeout=2 * WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=2 * WINDOW_SECONDS)


def unauthenticated_retry_after(*, address: str, now: float | None = None) -> int | None:
    """Seconds until this address may try again, if it spent this minute's unauthenticated budget."""
    key, remaining = _window_key(address, time.time() if now is None else now)
    count = cache.get(key, 0)
    if count >= settings.SERVICE_API_UNAUTHENTICATED_PER_MINUTE:
        return max(remaining, 1)
    return None


class ServiceApiEdgesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        # Imported here: the API module pulls in the broker, which the rest of the site never needs.
        from tokens.service_api.api import problem_response

        address = request.META.get("REMOTE_ADDR") or "unknown"
        retry_after = unauthenticated_retry_after(address=address)
        if retry_after is not None:
            return problem_response(
                "rate_limited", "too many unauthenticated requests from this address", retry_after=retry_after
            )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.SERVICE_API_MAX_BODY_BYTES:
            return problem_response(
                "request_too_large", f"the body is larger than {settings.SERVICE_API_MAX_BODY_BYTES} bytes"
            )
        response = self.get_response(request)
        if response.status_code == HTTPStatus.UNAUTHORIZED:
            unauthenticated_attempt_count(address=address)
        elif response.status_code == HTTPStatus.METHOD_NOT_ALLOWED and "problem" not in response.get(
            "Content-Type", ""
        ):
            allowed = response.get("Allow", "")
            response = problem_response("method_not_allowed", f"this endpoint answers {allowed} only")
            response["Allow"] = allowed
        return response
