"""Injected faults: for the next N requests, or for a window of (real, not sandbox) seconds, an
endpoint answers 500, 503, 429 + Retry-After, answers late, or drops the connection.

Windows use the monotonic clock on purpose: advancing the sandbox clock to age tokens must not end
or start a fault window.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("http_500", "http_503", "http_429", "latency", "timeout", "drop", "mfa_required")
ENDPOINTS = ("token", "authorize", "discovery", "resource", "partner_center", "keyvault", "any")
# Partner Center's documented MFA refusal (401, 900421) of an App+User call whatever its token says,
# e.g. when Partner Center's own view of the sign-in differs: only on the Partner Center endpoint.
PARTNER_CENTER_ONLY_KINDS = frozenset({"mfa_required"})
DEFAULT_TIMEOUT_DELAY = 30.0  # above every client timeout we configure (IDENTITY_HTTP_TIMEOUT = 10 s)


@dataclass
class Fault:
    id: int
    kind: str
    endpoint: str
    remaining: int | None  # None: unlimited within the window
    until: float | None  # monotonic deadline; None: until the count is used up
    retry_after: int | None
    delay: float

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds_left"] = (
            None if self.until is None else max(0.0, round(self.until - time.monotonic(), 3))
        )
        del data["until"]
        return data


class FaultSpecError(ValueError):
    pass


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind")
        endpoint = spec.get("endpoint", "token")
        if kind not in KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
        if endpoint not in ENDPOINTS:
            raise FaultSpecError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
        if (kind in PARTNER_CENTER_ONLY_KINDS) != (endpoint == "partner_center"):
            raise FaultSpecError("mfa_required goes with endpoint partner_center, and only it does")
        count, seconds = spec.get("count"), spec.get("seconds")
        if count is None and seconds is None:
            count = 1
        for name, value in (("count", count), ("seconds", seconds)):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
            ):
                raise FaultSpecError(f"{name} must be a positive number")
        retry_after = spec.get("retry_after", 60 if kind == "http_429" else None)
        if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
            raise FaultSpecError("retry_after must be a non-negative integer (Entra sends integer seconds)")
        default_delay = DEFAULT_TIMEOUT_DELAY if kind == "timeout" else 1.0 if kind == "latency" else 0.0
        delay = spec.get("delay_seconds", default_delay)
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 600:
            raise FaultSpecError("delay_seconds must be between 0 and 600")
        fault = Fault(
            id=next(self._ids),
            kind=kind,
            endpoint=endpoint,
            remaining=int(count) if count is not None else None,
            until=time.monotonic() + float(seconds) if seconds is not None else None,
            retry_after=retry_after,
            delay=float(delay),
        )
        self._faults.append(fault)
        return fault

    def take(self, endpoint: str, kinds: frozenset[str] | None = None) -> Fault | None:
        """The first active fault for this endpoint (of one of `kinds`, if given), consuming one of
        its count."""
        now = time.monotonic()
        self._faults = [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]
        for fault in self._faults:
            if fault.endpoint in (endpoint, "any") and (kinds is None or fault.kind in kinds):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def active(self) -> list[Fault]:
        now = time.monotonic()
        return [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]

    def clear(self) -> None:
        self._faults.clear()
