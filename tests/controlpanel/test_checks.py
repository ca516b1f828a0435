from __future__ import annotations

from django.core.checks import Error
from django.test import override_settings

from controlpanel.checks import check_encryption_keyset, check_production_safety

UNSAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DEBUG": True,
    "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}},
    "CELERY_BROKER_URL": "filesystem://",
    "IDENTITY_AUTHORITY_HOST": "http://login.example",
    "SECRET_KEY": "insecure-demo-secret-key-change-me",
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    "SAM_APP_CLIENT_ID": "",
}

SAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DEBUG": False,
    "DATABASES": {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}},
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "IDENTITY_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "SECRET_KEY": "k" * 64,
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache"}},
    "SAM_APP_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
}


def test_an_unsafe_production_configuration_is_refused_with_one_error_per_problem() -> None:
    with override_settings(**UNSAFE_PRODUCTION):
        errors = check_production_safety(None)
    ids = sorted(str(e.id) for e in errors if isinstance(e, Error))
    assert ids == [f"controlpanel.E00{n}" for n in range(1, 8)]
    assert all(e.hint for e in errors)


def test_a_safe_production_configuration_passes() -> None:
    with override_settings(**SAFE_PRODUCTION):
        assert check_production_safety(None) == []


def test_the_demo_defaults_are_accepted_outside_production() -> None:
    with override_settings(**{**UNSAFE_PRODUCTION, "ENVIRONMENT": "demo"}):
        assert check_production_safety(None) == []


def test_a_missing_keyset_is_an_error_everywhere() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYSET="", FIELD_ENCRYPTION_KEYSET_FILE=""):
        [error] = check_encryption_keyset(None)
    assert error.id == "controlpanel.E010"
    assert "generate_keyset" in (error.hint or "")


def test_metrics_guards_are_checked() -> None:
    from controlpanel.checks import check_metrics_access

    with override_settings(**SAFE_PRODUCTION, METRICS_BEARER_TOKEN="", METRICS_ALLOWED_CIDRS=[]):
        assert [e.id for e in check_metrics_access(None)] == ["controlpanel.E022"]
    with override_settings(
        **SAFE_PRODUCTION, METRICS_BEARER_TOKEN="short", METRICS_ALLOWED_CIDRS=["10.0.0.0/33"]
    ):
        assert sorted(str(e.id) for e in check_metrics_access(None)) == [
            "controlpanel.E020",
            "controlpanel.E021",
        ]
    with override_settings(
        **SAFE_PRODUCTION, METRICS_BEARER_TOKEN="t" * 32, METRICS_ALLOWED_CIDRS=["10.0.0.0/8"]
    ):
        assert check_metrics_access(None) == []


def test_audit_retention_settings_are_checked() -> None:
    from controlpanel.checks import check_audit_retention

    with override_settings(AUDIT_RETENTION_DAYS=30, AUDIT_PARTITIONS_AHEAD_MONTHS=0):
        assert sorted(str(e.id) for e in check_audit_retention(None)) == [
            "controlpanel.E030",
            "controlpanel.E031",
        ]
    with override_settings(AUDIT_RETENTION_DAYS=400, AUDIT_PARTITIONS_AHEAD_MONTHS=3):
        assert check_audit_retention(None) == []
