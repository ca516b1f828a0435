"""The staff console's pages, under the admin (its staff + MFA check): the operations overview at
/admin/ and the admin's list of models, moved to /admin/models/."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from console.charts import chart_svg, legend_swatch
from console.overview import overview_figures
from gdap.overview import gdap_counts_get


@require_GET
def console_home(request: HttpRequest) -> HttpResponse:
    overview = overview_figures()
    charts = [
        {
            "chart": chart,
            "svg": chart_svg(chart=chart),
            "legend": [(legend_swatch(index=index), series) for index, series in enumerate(chart.series)],
        }
        for chart in overview.charts
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Staff console",
        "summary": overview.health,
        "gdap": gdap_counts_get(),
        "charts": charts,
    }
    return TemplateResponse(request, "console/overview.html", context)


@require_GET
def console_models(request: HttpRequest) -> HttpResponse:
    return admin.site.index(request, extra_context={"title": "All models"})
