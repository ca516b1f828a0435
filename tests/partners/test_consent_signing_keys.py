"""The authority failing to give its signing keys during a consent is a page, never a 500."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client

from partners.models import Partner
from tokens.models import ConsentGrant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["http_503", "drop"])
def test_the_authority_failing_on_its_keys_during_consent_shows_a_page_and_stores_nothing(
    application, panel_settings, client: Client, kind: str
) -> None:
    connect = client.post("/onboarding/connect/")  # builds the MSAL object: its discovery is done
    answer = panel_settings.sign_in(connect.headers["Location"])
    panel_settings.control.add_fault(kind, endpoint="discovery", count=1)  # the ID token's keys
    callback = client.get(f"/onboarding/callback/?{urlencode(answer)}", follow=True)
    assert callback.status_code in (400, 503)  # a refusal or "try again later", never a 500
    assert b"Nothing was stored" in callback.content
    assert panel_settings.control.counters()["faults_injected"]
    assert not Partner.objects.exists() and not ConsentGrant.objects.exists()
