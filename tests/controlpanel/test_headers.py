"""Production headers: HSTS, the redirect to HTTPS (behind a TLS proxy too), secure cookies, and a
Content-Security-Policy that the panel's own pages satisfy (no inline script, no style attribute,
inline <style> only with the response's nonce)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client, override_settings

from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, grant_make, member_make, partner_make

PRODUCTION_SECURITY = [
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY", "SECURE_PROXY_SSL_HEADER", "SECURE_CONTENT_TYPE_NOSNIFF",
]  # fmt: skip


def settings_under(environment: dict[str, str]) -> dict[str, Any]:
    """The real settings module, evaluated in a fresh interpreter under this environment."""
    code = (
        "import json, controlpanel.settings as s; "
        f"print(json.dumps({{name: getattr(s, name) for name in {PRODUCTION_SECURITY!r}}}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "ENVIRONMENT", "BEHIND_TLS_PROXY")}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**env, **environment}, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_turns_on_hsts_the_https_redirect_and_secure_cookies() -> None:
    production = settings_under({"ENVIRONMENT": "production", "BEHIND_TLS_PROXY": "true"})
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert production["SESSION_COOKIE_SECURE"] is True and production["CSRF_COOKIE_SECURE"] is True
    assert production["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    demo_settings = settings_under({"ENVIRONMENT": "demo"})
    # The laptop demo runs on plain HTTP: no redirect, no HSTS pinned in the developer's browser.
    assert demo_settings["SECURE_SSL_REDIRECT"] is False and demo_settings["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_HSTS_SECONDS=31536000,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
def test_plain_http_is_redirected_and_https_gets_hsts() -> None:
    client = Client()
    plain = client.get("/admin/login/")
    assert plain.status_code == 301 and plain.headers["Location"] == "https://testserver/admin/login/"
    # Behind the TLS proxy: the proxy says the request came over HTTPS.
    proxied = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
    # The health probe stays reachable over plain HTTP for load balancers.
    assert client.get("/healthz").status_code != 301


def _policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def _assert_satisfies_policy(url: str, response) -> None:
    policy = _policy(response)
    assert policy["default-src"] == ["'none'"], url
    assert "'unsafe-inline'" not in " ".join(sum(policy.values(), [])), url
    body = response.content.decode()
    nonce = next((source for source in policy["style-src"] if source.startswith("'nonce-")), None)
    assert not re.search(r"\sstyle=", body), f"{url}: a style attribute is refused by the policy"
    assert not re.search(r"\son[a-z]+=", body), f"{url}: an inline event handler is refused by the policy"
    for tag in re.findall(r"<script\b[^>]*>", body):
        assert "src=" in tag, f"{url}: inline script {tag}"
    for tag in re.findall(r"<style\b[^>]*>", body):
        assert nonce and f'nonce="{nonce[7:-1]}"' in tag, f"{url}: <style> without this response's nonce"


@pytest.mark.django_db
def test_every_page_carries_a_policy_it_satisfies(staff_client: Client, application, settings) -> None:
    contoso = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    grant = grant_make(partner=contoso, application=application)
    member = member_make(
        partner=contoso, upn="admin@contoso.example", role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
    )
    partner_client = dashboard_login(Client(), member)
    pages = {
        "/onboarding/": Client(),
        "/dashboard/signin/": Client(),
        "/dashboard/": partner_client,
        "/dashboard/activity/": partner_client,
        f"/dashboard/grants/{grant.pk}/revoke/": partner_client,
        "/admin/login/": Client(),
        "/admin/": staff_client,
        "/admin/health/": staff_client,
        "/admin/tokens/consentgrant/": staff_client,
        f"/admin/tokens/consentgrant/{grant.pk}/change/": staff_client,
        "/admin/tokens/serviceclient/add/": staff_client,
        "/admin/tokens/auditevent/": staff_client,
        "/admin/partners/partner/": staff_client,
    }
    for url, client in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_satisfies_policy(url, response)
    # Pages that answer a form: the reason confirmation, and the service client's key shown once.
    posted = {
        "/admin/health/": {"kill_switch": "engage"},
        "/admin/tokens/serviceclient/add/": {
            "name": "orders", "audiences": '["graph"]', "cidrs": "[]", "rate_limit_per_minute": "600",
        },
    }  # fmt: skip
    for url, data in posted.items():
        response = staff_client.post(url, data)
        assert response.status_code == 200, url
        _assert_satisfies_policy(f"POST {url}", response)
    # The consent and sign-in forms are redirected to the identity provider: its origin is a
    # permitted form target, read from the live settings.
    assert (
        settings.IDENTITY_AUTHORITY_HOST.rstrip("/") in _policy(Client().get("/onboarding/"))["form-action"]
    )
