from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.panel",
    "tests.fixtures.staff",
    "tests.fixtures.service_clients",
    "tests.fixtures.renewal",
    "tests.fixtures.misbehaving_https",
    "tests.fixtures.keyvault",
]


@pytest.fixture
def postgres_only() -> None:
    """Skip, with a visible reason, tests of PostgreSQL-only behaviour when running on SQLite."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgres://...); running on SQLite")


@pytest.fixture(autouse=True)
def cache_empty() -> None:
    """Every test starts with an empty cache: rate-limit windows (per client, and the service API's
    per-address count of unauthenticated requests) must not carry over from an earlier test."""
    cache.clear()
