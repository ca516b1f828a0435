"""`{% kill_switch_banner %}`: the red banner on every admin page while a kill switch is engaged
(templates/admin/base_site.html). One small query per admin page."""

from __future__ import annotations

from typing import Any

from django import template

from console.overview import kill_switches_engaged

register = template.Library()


@register.inclusion_tag("console/kill_switch_banner.html")
def kill_switch_banner() -> dict[str, Any]:
    return {"switches": kill_switches_engaged()}


@register.filter
def thousands(value: int) -> str:
    """1234567 → "1,234,567"."""
    return f"{value:,}"
