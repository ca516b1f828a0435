"""Permission matrix (alice: Contoso admin agent, bob: Contoso sales agent, charlie: Fabrikam admin
agent, anonymous) on every partner URL; renew and revoke; activity; constant query counts."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlencode, urlparse

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, grant_make, member_make, partner_make
from tokens.audit import Actor
from tokens.issuance.broker import GrantRevoked, access_token_get
from tokens.models import Application, AuditEvent, ConsentGrant

pytestmark = pytest.mark.django_db

CANARY = "canary-dashboard-refresh-token-51d2"


@pytest.fixture
def world(application: Application):
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    fabrikam = partner_make(tenant_id=demo.FABRIKAM, name="Fabrikam")
    contoso_grant = grant_make(partner=contoso, application=application, refresh_token=CANARY)
    fabrikam_grant = grant_make(partner=fabrikam, application=application, refresh_token=CANARY + "-f")
    AuditEvent.objects.create(
        actor_type="service", actor_id="orders", action="token_issued", partner=contoso,
        grant=contoso_grant, application=application, audience="graph", purpose="contoso-purpose-7e1",
    )  # fmt: skip
    AuditEvent.objects.create(
        actor_type="service", actor_id="orders", action="token_issued", partner=fabrikam,
        grant=fabrikam_grant, application=application, audience="graph", purpose="fabrikam-purpose-9c4",
    )  # fmt: skip
    people = {
        "alice": member_make(
            partner=contoso, upn="alice@contoso", role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
        ),
        "bob": member_make(
            partner=contoso, upn="bob@contoso", role=AgentRole.SALES_AGENT, object_id=demo.ADATUM
        ),
        "charlie": member_make(
            partner=fabrikam, upn="charlie@fabrikam", role=AgentRole.ADMIN_AGENT, object_id=demo.FABRIKAM
        ),
    }
    return {"grant": contoso_grant, "fabrikam_grant": fabrikam_grant, "people": people}


def _client(world, who: str) -> Client:
    client = Client()
    return client if who == "anonymous" else dashboard_login(client, world["people"][who])


def _urls(grant: ConsentGrant) -> list[tuple[str, str]]:
    return [
        ("get", reverse("partners:dashboard")),
        ("get", reverse("partners:dashboard-activity")),
        ("post", reverse("partners:dashboard-grant-renew", args=[grant.pk])),
        ("get", reverse("partners:dashboard-grant-renew", args=[grant.pk])),
        ("get", reverse("partners:dashboard-contacts")),
        ("get", reverse("partners:dashboard-grant-revoke", args=[grant.pk])),
        ("post", reverse("partners:dashboard-grant-revoke", args=[grant.pk])),
    ]


# Expected status per persona for each of _urls(contoso grant), in order.
MATRIX = {
    "alice": [200, 200, 302, 200, 200, 200, 200],
    "bob": [200, 200, 403, 200, 200, 403, 403],
    "charlie": [200, 200, 404, 404, 200, 404, 404],
    "anonymous": [302, 302, 302, 302, 302, 302, 302],
}


@pytest.mark.parametrize("who", list(MATRIX))
def test_permission_matrix(world, who: str) -> None:
    grant = world["grant"]
    for (method, url), expected in zip(_urls(grant), MATRIX[who], strict=True):
        response = getattr(_client(world, who), method)(url)
        assert response.status_code == expected, (who, method, url)
        body = response.content.decode()
        assert CANARY not in body
        if who == "charlie":
            assert "Contoso" not in body and "contoso-purpose-7e1" not in body and str(grant.pk) not in body
        if who in ("alice", "bob"):
            assert "Fabrikam" not in body and "fabrikam-purpose-9c4" not in body
        if who == "anonymous":
            assert urlparse(response.headers["Location"]).path == "/dashboard/signin/"
        if expected == 302 and who == "alice":
            assert demo.CONTOSO in response.headers["Location"]  # consent bound to Contoso's tenant
    grant.refresh_from_db()
    assert grant.state == (ConsentGrant.State.REVOKED if who == "alice" else ConsentGrant.State.ACTIVE)


def test_the_overview_shows_what_a_partner_needs(world) -> None:
    body = _client(world, "bob").get("/dashboard/").content.decode()
    for text in [
        "SAM Control Panel (demo)",
        "Partner Center, Microsoft Graph",  # audiences in words, in one order
        '">in 89 days <span class="exact">(',  # relative, with the exact date beside it
        "admin@contoso.example",
        "Nothing to do",
    ]:
        assert text in body
    ConsentGrant.objects.filter(pk=world["grant"].pk).update(
        state="needs_renewal", failure_message="AADSTS50173"
    )
    body = _client(world, "bob").get("/dashboard/").content.decode()
    assert "An admin agent must renew it" in body and "AADSTS50173" in body


def test_revoke_destroys_the_token_audits_and_the_broker_refuses(world) -> None:
    client = _client(world, "alice")
    url = reverse("partners:dashboard-grant-revoke", args=[world["grant"].pk])
    confirm = client.get(url)
    assert "Yes, revoke now" in confirm.content.decode()
    done = client.post(url)
    assert "Enterprise applications" in done.content.decode()
    grant = ConsentGrant.objects.get(pk=world["grant"].pk)
    assert grant.state == ConsentGrant.State.REVOKED and grant.refresh_token is None and grant.generation == 2
    event = AuditEvent.objects.get(action=AuditEvent.Action.REVOKED)
    assert (event.actor_type, event.actor_id, event.partner_id) == (
        "partner_user",
        "alice@contoso",
        grant.partner_id,
    )
    with pytest.raises(GrantRevoked):
        access_token_get(
            partner=grant.partner, audience="graph", purpose="after revoke", actor=Actor.system("test")
        )


def test_revoke_needs_csrf(world) -> None:
    client = dashboard_login(Client(enforce_csrf_checks=True), world["people"]["alice"])
    assert (
        client.post(reverse("partners:dashboard-grant-revoke", args=[world["grant"].pk])).status_code == 403
    )
    assert ConsentGrant.objects.get(pk=world["grant"].pk).state == ConsentGrant.State.ACTIVE


def test_activity_is_filtered_and_paginated(world, application) -> None:
    contoso = world["grant"].partner
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_type="system",
            actor_id="renewal",
            action="refresh_failed",
            outcome="failure",
            partner=contoso,
        )
        for _ in range(30)
    )
    client = _client(world, "bob")
    first = client.get("/dashboard/activity/")
    assert "31 events" in first.content.decode() and "Page 1 of 2" in first.content.decode()
    failures = client.get("/dashboard/activity/", {"outcome": "failure"})
    assert "30 events" in failures.content.decode()
    issued = client.get("/dashboard/activity/", {"action": "token_issued"})
    body = issued.content.decode()
    assert "1 event" in body and "contoso-purpose-7e1" in body
    # Paged by key: the "Older" link carries the last event's (at, id), the "Newer" link back the first's.
    older = re.search(r'href="\?([^"]*before=[^"]*)" rel="next"', failures.content.decode())
    assert older is not None
    second = client.get(f"/dashboard/activity/?{html.unescape(older.group(1))}")
    body = second.content.decode()
    assert "Page 2 of 2" in body and 'rel="next"' not in body
    assert body.count('<tr role="row">') - 1 == 5  # 30 failures, 25 on the first page (header row excluded)
    newer = re.search(r'href="\?([^"]*after=[^"]*)" rel="prev"', body)
    assert newer is not None
    back = client.get(f"/dashboard/activity/?{html.unescape(newer.group(1))}").content.decode()
    assert "Page 1 of 2" in back and back.count('<tr role="row">') - 1 == 25 and 'rel="prev"' not in back
    # Dates filter by UTC day; malformed cursors show the first page.
    today = timezone.now().date()
    assert "31 events" in client.get("/dashboard/activity/", {"since": today.isoformat()}).content.decode()
    assert (
        "0 events"
        in client.get(
            "/dashboard/activity/", {"until": (today - timedelta(days=1)).isoformat()}
        ).content.decode()
    )
    for junk in ({"page": "x"}, {"before": "x_y"}, {"after": "1e99_1"}):
        response = client.get("/dashboard/activity/", junk)
        assert response.status_code == 200 and "Page 1 of" in response.content.decode()


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/activity/"])
def test_query_counts_do_not_grow(world, url: str, django_assert_num_queries) -> None:
    client = _client(world, "alice")
    contoso = world["grant"].partner
    client.get(url)  # warm the session

    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    applications = Application.objects.bulk_create(
        Application(
            name=f"App {i}", client_id=f"client-{i}", authority_host="https://x", redirect_uri="https://x/"
        )
        for i in range(99)
    )
    for app in applications:
        grant_make(partner=contoso, application=app, refresh_token=CANARY)
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_type="service", actor_id="orders", action="token_issued", partner=contoso, application=app
        )
        for app in applications
    )
    with django_assert_num_queries(len(one)):
        assert client.get(url).status_code == 200


def test_renew_through_the_dashboard_renews_the_grant(consented_grant, panel_settings) -> None:
    alice = member_make(
        partner=consented_grant.partner,
        upn=demo.ADMIN_AGENT,
        role=AgentRole.ADMIN_AGENT,
        object_id=demo.CONTOSO,
    )
    ConsentGrant.objects.filter(pk=consented_grant.pk).update(
        policy_expires_at=timezone.now() + timedelta(days=2)
    )
    client = dashboard_login(Client(), alice)
    start = client.post(reverse("partners:dashboard-grant-renew", args=[consented_grant.pk]))
    assert start.status_code == 302
    answer = panel_settings.sign_in(start.headers["Location"], demo.ADMIN_AGENT)
    callback = client.get(f"/onboarding/callback/?{urlencode(answer)}")
    # A renewal the partner asked for in the dashboard needs no second confirmation, and ends there.
    assert callback.status_code == 302 and callback.headers["Location"] == "/dashboard/"
    body = client.get("/dashboard/").content.decode()
    assert "Renewed SAM Control Panel (demo) for Contoso Partner: the consent now lapses in 89 days" in body
    assert "Renewed" not in client.get("/dashboard/").content.decode()  # said once
    grant = ConsentGrant.objects.get()
    assert grant.generation == consented_grant.generation + 1
    assert grant.policy_expires_at > timezone.now() + timedelta(days=80)
    assert grant.refresh_token != consented_grant.refresh_token
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RENEWED).count() == 1


def test_only_the_panels_own_application_is_renewed_here(world, application) -> None:
    other = Application.objects.create(
        name="Reports", client_id="reports-client", authority_host="https://x", redirect_uri="https://x/"
    )
    reports_grant = grant_make(partner=world["grant"].partner, application=other, refresh_token=CANARY)
    client = _client(world, "alice")
    body = client.get("/dashboard/").content.decode()
    assert "Renew SAM Control Panel (demo)" in body and "Renew Reports" not in body
    refused = client.post(reverse("partners:dashboard-grant-renew", args=[reports_grant.pk]))
    assert refused.status_code == 409 and "Nothing was changed" in refused.content.decode()
