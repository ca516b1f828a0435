"""GET /metrics: refused without its guard; after a consent, a token, a refusal and a renewal, every
family is there with its bounded labels (and no partner identifier anywhere in the text)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tokens.issuance.broker import AudienceNotConsented, access_token_get
from tokens.models import ConsentGrant
from tokens.renewal.sweep import Outcome, grant_renew, renewal_sweep

TOKEN = "m" * 40

pytestmark = pytest.mark.django_db


def _scrape(client: Client, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.content.decode())
    }


@override_settings(METRICS_BEARER_TOKEN=TOKEN, METRICS_ALLOWED_CIDRS=[])
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer " + "n" * 40]
)
def test_the_endpoint_refuses_without_the_token(client: Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"samcp_" not in response.content


def test_the_endpoint_refuses_everyone_when_no_guard_is_configured(client: Client) -> None:
    with override_settings(METRICS_BEARER_TOKEN="", METRICS_ALLOWED_CIDRS=[]):
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_the_allow_list_admits_its_networks_only_and_both_guards_must_hold(client: Client) -> None:
    with override_settings(METRICS_BEARER_TOKEN="", METRICS_ALLOWED_CIDRS=["127.0.0.0/8"]):
        assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
        assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 401
        assert client.get("/metrics", REMOTE_ADDR="not an address").status_code == 401
    with override_settings(METRICS_BEARER_TOKEN=TOKEN, METRICS_ALLOWED_CIDRS=["127.0.0.0/8"]):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert (
            client.get(
                "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, REMOTE_ADDR="10.1.2.3"
            ).status_code
            == 401
        )


def test_a_post_is_refused(client: Client) -> None:
    with override_settings(METRICS_BEARER_TOKEN=TOKEN):
        assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


@override_settings(METRICS_BEARER_TOKEN=TOKEN, METRICS_ALLOWED_CIDRS=[])
def test_families_and_labels_after_a_consent_a_token_a_refusal_and_a_renewal(
    consented_grant: ConsentGrant, service_actor, enqueued_tasks, django_capture_on_commit_callbacks
) -> None:
    partner = consented_grant.partner
    access_token_get(partner=partner, audience="graph", purpose="metrics test", actor=service_actor)
    access_token_get(partner=partner, audience="graph", purpose="metrics test", actor=service_actor)
    with pytest.raises(AudienceNotConsented):
        access_token_get(partner=partner, audience="no-such-audience", purpose="x", actor=service_actor)
    ConsentGrant.objects.filter(pk=consented_grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(days=8)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_sweep().grant_ids == [str(consented_grant.pk)]
    assert enqueued_tasks == [str(consented_grant.pk)]
    assert grant_renew(grant_id=str(consented_grant.pk)).outcome is Outcome.RENEWED

    client = Client()
    scraped = _scrape(client)
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).content.decode()

    def labels(family: str) -> list[dict[str, str]]:
        return [sample_labels for sample_labels, _ in scraped[family]]

    def value(family: str, **wanted: str) -> float:
        return sum(v for found, v in scraped[family] if all(found.get(k) == w for k, w in wanted.items()))

    assert value("samcp_consents", kind="first") >= 1
    assert value("samcp_token_requests", audience="graph", outcome="issued") >= 2
    # An unknown audience is counted as "other": a caller cannot mint label values.
    assert value("samcp_token_requests", audience="other", outcome="audience_not_consented") >= 1
    assert value("samcp_token_cache_lookups", result="hit") >= 1
    assert value("samcp_token_cache_lookups", result="miss") >= 1
    assert value("samcp_identity_request_seconds", operation="refresh") >= 2  # _count: miss + renewal
    assert "samcp_identity_failures" in scraped
    assert value("samcp_renewal_sweep_seconds") >= 1
    assert value("samcp_grants", state="active") == 1
    assert {found["state"] for found in labels("samcp_grants")} == {s.value for s in ConsentGrant.State}
    grant = ConsentGrant.objects.get()
    assert grant.last_refreshed_at is not None
    assert value("samcp_grant_soonest_policy_expiry_timestamp_seconds") == grant.policy_expires_at.timestamp()
    assert value("samcp_grant_oldest_refresh_timestamp_seconds") == grant.last_refreshed_at.timestamp()
    assert value("samcp_renewal_sweep_last_run_timestamp_seconds") > timezone.now().timestamp() - 60
    assert value("samcp_operator_alerts_open") == 0
    assert value("samcp_kill_switch_engaged", scope="global") == 0
    for identifier in (partner.tenant_id, partner.pk, grant.pk, partner.display_name):
        assert str(identifier) not in text


@pytest.fixture
def enqueued_tasks(monkeypatch) -> list[str]:
    """What the sweep publishes, instead of publishing it."""
    from tokens.tasks import grant_renew_task

    published: list[str] = []
    monkeypatch.setattr(grant_renew_task, "apply_async", lambda args, **options: published.append(args[0]))
    return published


@pytest.mark.django_db(transaction=True)
def test_multiprocess_mode_sums_the_counters_of_every_process(tmp_path, postgres_only) -> None:
    """As under gunicorn and Celery: processes sharing PROMETHEUS_MULTIPROC_DIR each count, and the
    endpoint (in yet another process) reports the sum."""
    from tests.fixtures.renewal import database_url

    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "METRICS_BEARER_TOKEN": TOKEN,
    }
    count = (
        "import django; django.setup(); from tokens.metrics import TOKEN_CACHE; "
        "TOKEN_CACHE.labels(result='hit').inc(3)"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, cwd=settings.BASE_DIR)
    scrape = (
        "import django; django.setup(); from django.test import Client; "
        f"print(Client().get('/metrics', headers={{'Authorization': 'Bearer {TOKEN}'}}).content.decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", scrape],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    ).stdout
    assert 'samcp_token_cache_lookups_total{result="hit"} 6.0' in text
    assert "samcp_grants{" in text  # the database gauges come along
