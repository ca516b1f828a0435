"""No secrets on error pages: a 500 in the middle of a consent, with DEBUG on (the default outside
production), shows Django's technical page without the refresh, access and ID tokens that the
frames on the stack hold. The same failure with Django's own filter shows them: the test can fail."""

from __future__ import annotations

import pytest
from django.test import Client
from django.views.debug import get_default_exception_reporter_filter

from partners import onboarding
from tests.fixtures.panel import consent_run


class Boom(RuntimeError):
    pass


@pytest.fixture
def failing_consent(application, panel_settings, monkeypatch, settings):
    """A consent that fails with an unexpected error once every token is in hand (after the Graph
    lookup, before anything is stored), and the token values it saw, as canaries."""
    settings.DEBUG = True
    seen: dict[str, str] = {}
    real_redeem = onboarding.flow_redeem

    def redeem_and_remember(**kwargs):
        issued = real_redeem(**kwargs)
        seen.update(
            {
                "access token": issued.access_token,
                "refresh token": issued.refresh_token or "",
                "id token": issued.id_token or "",
            }
        )
        return issued

    def fail(*, application, consent):
        seen["newest refresh token"] = consent.refresh_token
        raise Boom("unexpected failure during consent")

    monkeypatch.setattr(onboarding, "flow_redeem", redeem_and_remember)
    monkeypatch.setattr(onboarding, "consent_allowed_check", fail)
    return seen


def _technical_page(panel_settings) -> str:
    client = Client(raise_request_exception=False)
    run = consent_run(client, panel_settings)
    assert run.callback.status_code == 500
    page = run.callback.content.decode()
    assert "Boom" in page and "Local vars" in page, "the technical 500 page, with the frames' locals"
    return page


@pytest.mark.django_db
def test_the_technical_500_page_shows_no_token(failing_consent, panel_settings) -> None:
    page = _technical_page(panel_settings)
    assert len(failing_consent) == 4 and all(len(value) > 20 for value in failing_consent.values())
    for name, value in failing_consent.items():
        assert value not in page, f"the {name} is on the technical 500 page"


@pytest.fixture
def djangos_own_filter(settings):
    # Django caches the filter it builds from the setting.
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = "django.views.debug.SafeExceptionReporterFilter"
    get_default_exception_reporter_filter.cache_clear()  # type: ignore[attr-defined]
    yield
    get_default_exception_reporter_filter.cache_clear()  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_django_s_own_filter_would_show_them(failing_consent, panel_settings, djangos_own_filter) -> None:
    page = _technical_page(panel_settings)
    assert any(value in page for value in failing_consent.values())
