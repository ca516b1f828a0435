"""Prometheus metrics of the token vault: what happens (counters and histograms, recorded where it
happens, in web and worker processes alike) and what the database holds (gauges, read at scrape
time by `StateCollector`, so they are right whichever process answers the scrape).

Labels are bounded sets: audience names from SAM_AUDIENCES (anything else is "other"), refusal
codes of the broker, failure classes. Never a partner, tenant, grant or client id: those would grow
one series per partner and belong in the audit trail.

Under gunicorn and Celery, prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) sums the
counters of every process; docs/operations.md ("Metrics") says how to run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TOKEN_REQUESTS = Counter(
    "samcp_token_requests",
    "Access-token requests answered, by audience and outcome (issued, or the refusal code).",
    ["audience", "outcome"],
)
TOKEN_CACHE = Counter(
    "samcp_token_cache_lookups", "Access-token cache lookups of the broker, by result.", ["result"]
)
IDENTITY_SECONDS = Histogram(
    "samcp_identity_request_seconds",
    "Time of one refresh-token redemption at the identity provider (MSAL, TLS, retries included).",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IDENTITY_FAILURES = Counter(
    "samcp_identity_failures",
    "Failed identity-provider requests, by operation and failure class (tokens/issuance/failures.py).",
    ["operation", "failure_class"],
)
CONSENTS = Counter("samcp_consents", "Consents recorded, first or renewed.", ["kind"])
SWEEP_SECONDS = Histogram(
    "samcp_renewal_sweep_seconds",
    "Time of one renewal sweep: selecting the due grants, leasing and enqueueing them.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

OTHER = "other"
# The outcome of a token request that got its token; refusals carry their BrokerError code.
ISSUED = "issued"


def audience_label(audience: str) -> str:
    """A caller names the audience: only configured names become label values."""
    return audience if audience in settings.SAM_AUDIENCES else OTHER


def token_request_count(*, audience: str, outcome: str) -> None:
    TOKEN_REQUESTS.labels(audience=audience_label(audience), outcome=outcome).inc()


def _timestamp_gauge(name: str, documentation: str, moment: datetime | None) -> Iterator[GaugeMetricFamily]:
    """A Unix-time gauge, absent while there is no such moment (no grant, no sweep yet): an
    alert on `time() - gauge` then does not fire on a made-up zero."""
    if moment is not None:
        yield GaugeMetricFamily(name, documentation, value=moment.timestamp())


class StateCollector(Collector):
    """Gauges read from the database and the cache at each scrape: a handful of aggregate queries
    over indexed columns (bench/scale.py measures the scrape at 100,000 grants)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from tokens.models import ConsentGrant, KillSwitch, OperatorAlert
        from tokens.renewal.liveness import renewal_liveness_get
        from tokens.staff_admin.health import grants_by_state_count

        by_state = grants_by_state_count()
        grants = GaugeMetricFamily("samcp_grants", "Consent grants by state.", labels=["state"])
        for state in ConsentGrant.State:
            grants.add_metric([state.value], by_state.get(state.value, 0))
        yield grants

        live = ConsentGrant.objects.filter(state__in=ConsentGrant.ISSUABLE_STATES).aggregate(
            soonest_expiry=Min("policy_expires_at"), oldest_refresh=Min("last_refreshed_at")
        )
        yield from _timestamp_gauge(
            "samcp_grant_soonest_policy_expiry_timestamp_seconds",
            "Soonest policy expiry among active and expiring grants (Unix time).",
            live["soonest_expiry"],
        )
        yield from _timestamp_gauge(
            "samcp_grant_oldest_refresh_timestamp_seconds",
            "Oldest last successful refresh among active and expiring grants (Unix time).",
            live["oldest_refresh"],
        )
        yield from _timestamp_gauge(
            "samcp_renewal_sweep_last_run_timestamp_seconds",
            "When the renewal sweep last finished (Unix time).",
            renewal_liveness_get().last_sweep_at,
        )
        alerts = OperatorAlert.objects.filter(resolved_at=None).aggregate(n=Count("id"))["n"]
        yield GaugeMetricFamily("samcp_operator_alerts_open", "Open operator alerts.", value=alerts)

        switches = KillSwitch.objects.filter(engaged=True).aggregate(
            all_apps=Count("id", filter=Q(application=None)), apps=Count("application_id")
        )
        kill = GaugeMetricFamily(
            "samcp_kill_switch_engaged",
            "Engaged kill switches: scope global (1 when all issuance is suspended) or application (count).",
            labels=["scope"],
        )
        kill.add_metric(["global"], switches["all_apps"])
        kill.add_metric(["application"], switches["apps"])
        yield kill
        yield GaugeMetricFamily(
            "samcp_metrics_scrape_timestamp_seconds",
            "When this scrape read the database (Unix time).",
            value=timezone.now().timestamp(),
        )
