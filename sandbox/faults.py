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

KINDS = ("http_500", "http_503", "http_429", "latency", "timeout", "drop", "mfa_required", "aadsts")
ENDPOINTS = ("token", "authorize", "discovery", "resource", "partner_center", "keyvault", "any")
# Partner Center's documented MFA refusal (401, 900421) of an App+User call whatever its token says,
# e.g. when Partner Center's own view of the sign-in differs: only on the Partner Center endpoint.
PARTNER_CENTER_ONLY_KINDS = frozenset({"mfa_required"})
# An Entra error answer with any AADSTS code (one the panel may never have seen), optionally only
# for the token requests of one tenant: taken once the request's tenant is known, token endpoint only.
TENANT_KINDS = frozenset({"aadsts"})
# Kinds taken where the request is understood, never by the generic fault at the door.
LATE_KINDS = PARTNER_CENTER_ONLY_KINDS | TENANT_KINDS
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
    code: int | None = None  # aadsts: the AADSTS number
    error: str | None = None  # aadsts: the OAuth error value
    tenant: str | None = None  # aadsts: only this tenant's requests (None: any)

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
        code, error, tenant = spec.get("code"), spec.get("error", "invalid_grant"), spec.get("tenant")
        if kind in TENANT_KINDS:
            if endpoint != "token":
                raise FaultSpecError("aadsts goes with endpoint token")
            if not isinstance(code, int) or isinstance(code, bool) or not 0 < code < 10**8:
                raise FaultSpecError("aadsts needs code, a positive AADSTS number")
            if not isinstance(error, str) or not error.isidentifier() or len(error) > 64:
                raise FaultSpecError("error must be an OAuth error value such as invalid_grant")
            if tenant is not None and (not isinstance(tenant, str) or len(tenant) > 64):
                raise FaultSpecError("tenant must be a tenant id")
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
            **({"code": code, "error": error, "tenant": tenant} if kind in TENANT_KINDS else {}),
        )
        self._faults.append(fault)
        return fault

    def take(
        self, endpoint: str, kinds: frozenset[str] | None = None, *, tenant: str | None = None
    ) -> Fault | None:
        """The first active fault for this endpoint, consuming one of its count: of one of `kinds`
        (and for `tenant`, where the fault names one) if given, else of any kind but the late ones."""
        now = time.monotonic()
        self._faults = [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]
        for fault in self._faults:
            wanted = fault.kind not in LATE_KINDS if kinds is None else fault.kind in kinds
            if fault.tenant is not None and fault.tenant != tenant:
                wanted = False
            if fault.endpoint in (endpoint, "any") and wanted:
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def active(self) -> list[Fault]:
        now = time.monotonic()
        return [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]

    def clear(self) -> None:
        self._faults.clear()
