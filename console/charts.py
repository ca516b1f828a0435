"""Daily bar charts drawn on the server as inline SVG: no script, and no style attribute (the CSP
allows neither). Bars are stacked by series; each series is coloured by a class of
console/static/console/console.css (`series-<n>`), and every bar carries a <title> with its day,
series and count, so the figures are never told by colour alone (the legend and the table beside
each chart give them in words too)."""

from __future__ import annotations

import math
from datetime import date

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from console.overview import Chart

WIDTH = 640
HEIGHT = 200
LEFT = 48  # room for the y-axis labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the day labels
BAR_SHARE = 0.7  # of each day's slot; the rest is the gap between bars
LABEL_EVERY_DAYS = 7  # today, and each week before it


def axis_max(value: int) -> int:
    """The top of the y axis: the smallest of 2, 4, 6, 8, 10 x 10^n (or 10^n itself) at least
    `value`, and at least 2, so that the axis's middle line is a whole number too."""
    if value <= 2:
        return 2
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 4, 6, 8, 10) if step * power >= value)


def axis_label(value: float) -> str:
    """Short enough for the axis at any size: 0.5, 20, 1.5k, 2M."""
    for divisor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= divisor:
            return f"{value / divisor:g}{suffix}"
    return f"{value:g}"


def chart_svg(*, chart: Chart) -> SafeString:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / len(chart.days)
    bar = slot * BAR_SHARE
    totals = [sum(series.counts[i] for series in chart.series) for i in range(len(chart.days))]
    top = axis_max(max(totals, default=0))

    def y(value: float) -> str:
        return _n(TOP + plot_height - plot_height * value / top)

    parts: list[SafeString] = []
    for value in (0, top / 2, top):  # gridlines, labelled on the left
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                LEFT,
                WIDTH - RIGHT,
                y(value),
                y(value),
            )
        )
        parts.append(
            format_html(
                '<text class="axis" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
                LEFT - 6,
                y(value),
                axis_label(value),
            )
        )
    last = len(chart.days) - 1
    for i, day in enumerate(chart.days):
        x = LEFT + slot * i + (slot - bar) / 2
        base = 0
        for index, series in enumerate(chart.series):  # stacked, in the legend's order
            count = series.counts[i]
            if count:
                parts.append(
                    format_html(
                        '<rect class="series-{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                        index,
                        _n(x),
                        y(base + count),
                        _n(bar),
                        _n(plot_height * count / top),
                        _day(day),
                        f"{count:,}",
                        series.label,
                    )
                )
                base += count
        if i == last:  # flush with the last bar's right edge, never cut off
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="end">today</text>', _n(x + bar), HEIGHT - 8
                )
            )
        elif (last - i) % LABEL_EVERY_DAYS == 0:
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x + bar / 2),
                    HEIGHT - 8,
                    _day(day),
                )
            )
    if not chart.total:
        parts.append(
            format_html(
                '<text class="axis empty" x="{}" y="{}" text-anchor="middle">No events in these {} days</text>',
                _n(LEFT + plot_width / 2),
                _n(TOP + plot_height / 2),
                len(chart.days),
            )
        )
    return format_html(
        '<svg class="console-chart" viewBox="0 0 {} {}" role="img" aria-labelledby="chart-{}-title chart-{}-desc"'
        ' xmlns="http://www.w3.org/2000/svg"><title id="chart-{}-title">{}</title>'
        '<desc id="chart-{}-desc">{} in the last {} days: {}.</desc>{}</svg>',
        WIDTH,
        HEIGHT,
        chart.slug,
        chart.slug,
        chart.slug,
        chart.title,
        chart.slug,
        f"{chart.total:,}",
        len(chart.days),
        _summary(chart),
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def legend_swatch(*, index: int) -> SafeString:
    return format_html(
        '<svg class="console-swatch" viewBox="0 0 10 10" aria-hidden="true" focusable="false">'
        '<rect class="series-{}" width="10" height="10"/></svg>',
        index,
    )


def _summary(chart: Chart) -> SafeString:
    return format_html_join(", ", "{} {}", ((series.label, f"{series.total:,}") for series in chart.series))


def _day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _n(value: float) -> str:
    """Coordinates with one decimal: enough at this size, and a short page."""
    return f"{value:.1f}".rstrip("0").rstrip(".")
