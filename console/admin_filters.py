"""List filters that the console's numbers link to, so that the list a number opens says, in its
own filter sidebar, what it is filtered by."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tokens.models import ConsentGrant


class GrantStateFilter(admin.SimpleListFilter):
    """The grants list by state, as `?state=<state>` (the console's and the health page's links)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(ConsentGrant.State.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> QuerySet[ConsentGrant]:
        return queryset.filter(state=self.value()) if self.value() else queryset
