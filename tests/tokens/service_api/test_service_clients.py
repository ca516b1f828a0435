"""Service clients: created in the admin or with a command, the key shown once and kept nowhere."""

from __future__ import annotations

import io
import logging
import re

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from partners.models import Partner
from sandbox import demo
from tokens.models import ServiceClient
from tokens.service_api.service_clients import RateLimited, service_client_rate_limit_check

pytestmark = pytest.mark.django_db

KEY = re.compile(r"samcp_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")


def _create(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_service_client", *args, stdout=out, stderr=err)
    assert KEY.fullmatch(out.getvalue().strip()), "stdout holds the key and nothing else"
    assert not KEY.search(err.getvalue())
    return out.getvalue().strip()


def _everything_stored() -> str:
    return "\n".join(
        repr(row)
        for model in apps.get_models()
        for row in model.objects.values_list()  # type: ignore[attr-defined]
    )


def test_the_command_prints_the_key_once_and_stores_the_scope() -> None:
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    _create(
        "--name", "orders", "--audience", "graph", "--audience", "partner_center",
        "--partner", demo.CONTOSO, "--cidr", "10.1.2.3/8", "--rate-limit", "60",
    )  # fmt: skip
    client = ServiceClient.objects.get(name="orders")
    assert client.audiences == ["graph", "partner_center"]
    assert list(client.partners.values_list("tenant_id", flat=True)) == [Partner.objects.get().tenant_id]
    assert (client.cidrs, client.rate_limit_per_minute) == (["10.0.0.0/8"], 60)


@pytest.mark.parametrize(
    "args",
    [
        ["--audience", "exchange"],
        ["--audience", "graph", "--cidr", "not-a-network"],
        ["--audience", "graph", "--partner", "61500bb0-d5d9-408a-abf0-577f83dc2d21"],
    ],
    ids=["unknown audience", "bad cidr", "unknown partner"],
)
def test_the_command_refuses_a_bad_scope(args) -> None:
    with pytest.raises(CommandError):
        call_command("create_service_client", "--name", "x", *args, stdout=io.StringIO())
    assert not ServiceClient.objects.exists()


def test_the_admin_shows_a_new_key_once_and_never_the_digest(staff_client) -> None:
    response = staff_client.post(
        "/admin/tokens/serviceclient/add/",
        {"name": "orders", "audiences": ["graph"], "cidrs": "", "rate_limit_per_minute": "600"},
    )
    assert response.status_code == 200, response.content
    shown = KEY.findall(response.content.decode())
    assert len(shown) == 1
    assert "no-store" in response["Cache-Control"]
    client = ServiceClient.objects.get()
    pages = [
        staff_client.get(f"/admin/tokens/serviceclient/{client.pk}/change/").content.decode(),
        staff_client.get("/admin/tokens/serviceclient/").content.decode(),
    ]
    for page in pages:
        assert shown[0] not in page and shown[0].split("_", 2)[2] not in page
        assert client.key_digest not in page


def test_the_admin_disables_a_client(staff_client) -> None:
    key = _create("--name", "orders", "--audience", "graph")
    client = ServiceClient.objects.get()
    staff_client.post("/admin/tokens/serviceclient/", {"action": "disable", "_selected_action": [client.pk]})
    client.refresh_from_db()
    assert client.disabled_at is not None
    assert staff_client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_canary_the_key_is_never_stored_nor_logged(client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = _create("--name", "orders", "--audience", "graph")
    secret = key.split("_", 2)[2]
    Partner.objects.create(tenant_id=demo.CONTOSO, display_name="Contoso")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_X_REQUEST_ID": "canary"}
    client.get("/api/v1/ping", **headers)
    body = {"partner_tenant_id": demo.CONTOSO, "audience": "graph", "purpose": "canary"}
    client.post("/api/v1/tokens", data=body, content_type="application/json", **headers)
    client.post("/api/v1/tokens", data="{", content_type="application/json", **headers)
    client.get("/api/v1/ping", HTTP_AUTHORIZATION=f"Bearer {key[:-1]}x")
    stored = _everything_stored()
    assert "canary" in stored  # the audit rows are there, so the search looked in the right place
    for text in (stored, caplog.text):
        assert key not in text and secret not in text and key[:-1] not in text


def test_the_rate_limit_window_is_shared_and_resets_each_minute() -> None:
    key = _create("--name", "orders", "--audience", "graph", "--rate-limit", "1")
    assert key
    client = ServiceClient.objects.get()
    start = 1_800_000_000.0  # the start of a one-minute window
    service_client_rate_limit_check(client=client, now=start)
    with pytest.raises(RateLimited) as refused:
        service_client_rate_limit_check(client=client, now=start + 45)
    assert refused.value.retry_after == 15
    service_client_rate_limit_check(client=client, now=start + 60)
