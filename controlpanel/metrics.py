"""The Prometheus endpoint, GET /metrics: refused unless the scraper presents METRICS_BEARER_TOKEN
or comes from METRICS_ALLOWED_CIDRS (when both are set, both must hold). It names no partner, but
it tells how many grants exist, when they lapse and whether issuance is suspended: not for the
public.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn and Celery, docs/operations.md "Metrics"), the counters
of every process of the host are summed from that directory; without it, this process's own.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tokens.metrics import StateCollector

_STATE = CollectorRegistry()
_STATE.register(StateCollector())


def metrics_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """METRICS_ALLOWED_CIDRS as networks; a malformed entry allows nothing (the system check names it)."""
    networks = []
    for cidr in settings.METRICS_ALLOWED_CIDRS:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return networks


def _address_allowed(client_ip: str | None) -> bool:
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return False
    return any(address in network for network in metrics_networks())


def _token_presented(request: HttpRequest) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_BEARER_TOKEN
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected.encode())


def metrics_access_allowed(request: HttpRequest) -> bool:
    """Every configured guard must pass, and at least one must be configured."""
    checks = []
    if settings.METRICS_BEARER_TOKEN:
        checks.append(_token_presented(request))
    if settings.METRICS_ALLOWED_CIDRS:
        checks.append(_address_allowed(request.META.get("REMOTE_ADDR")))
    return bool(checks) and all(checks)


def metrics_render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        events = generate_latest(registry)
    else:
        events = generate_latest(REGISTRY)
    return events + generate_latest(_STATE)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_access_allowed(request):
        response = HttpResponse("metrics need the bearer token of METRICS_BEARER_TOKEN\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
