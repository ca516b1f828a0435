from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from tokens.renewal.liveness import renewal_liveness_get


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@require_GET
def healthz_renewal(request: HttpRequest) -> JsonResponse:
    """For monitoring: 200 while beat sweeps, 503 "stale" when no renewal sweep ran for two
    RENEWAL_SWEEP_MINUTES intervals. Times only: no counts or names of partners."""
    liveness = renewal_liveness_get()
    return JsonResponse(
        {
            "status": "stale" if liveness.stale else "ok",
            "last_sweep_at": liveness.last_sweep_at.isoformat() if liveness.last_sweep_at else None,
            "stale_after_seconds": int(liveness.stale_after.total_seconds()),
        },
        status=503 if liveness.stale else 200,
    )
