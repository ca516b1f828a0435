"""The browser tests' sandbox and panel: a sandbox whose app registration accepts the live
server's callback URLs, and the demo application pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test.utils import override_settings

from controlpanel.demo_setup import demo_directory_write
from sandbox import demo
from sandbox.control_client import start_sandbox
from tests.fixtures.panel import AUDIENCES
from tests.fixtures.sandbox import RunningSandbox
from tokens.credentials.applications import ApplicationSpec, application_upsert, credential_secret_add
from tokens.issuance.identity import msal_apps_clear
from tokens.models import Application


@pytest.fixture(scope="module")
def browser_sandbox(live_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox whose demo app registration accepts the live server's callback URLs (its port is
    chosen at run time, and Entra, like the sandbox, matches redirect URIs exactly)."""
    folder = tmp_path_factory.mktemp("browser-sandbox")
    directory = folder / "directory.toml"
    # As `make demo PORT=...` writes it: the demo app's callbacks on the live server's port.
    demo_directory_write(panel_port=int(urlsplit(live_server.url).port or 80), path=directory)
    with start_sandbox(state_dir=folder / "state", directory=directory) as control:
        yield RunningSandbox(control)


@pytest.fixture
def browser_panel(browser_sandbox: RunningSandbox, live_server, monkeypatch) -> Iterator[Application]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself are
    # synchronous and safe here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with override_settings(
        IDENTITY_AUTHORITY_HOST=browser_sandbox.base_url,
        IDENTITY_CA_BUNDLE=str(browser_sandbox.ca_bundle),
        GRAPH_BASE_URL=browser_sandbox.base_url,
        PARTNER_CENTER_BASE_URL=browser_sandbox.base_url,
        DASHBOARD_SIGNIN_REDIRECT_URI=f"{live_server.url}/dashboard/signin/callback/",
        SAM_APP_ADMIN_CONSENT_REDIRECT_URI=f"{live_server.url}/onboarding/admin-consent/callback/",
    ):
        msal_apps_clear()
        cache.clear()
        application = application_upsert(
            spec=ApplicationSpec(
                name="SAM Control Panel (demo)",
                client_id=demo.CLIENT_ID,
                authority_host=browser_sandbox.base_url,
                redirect_uri=f"{live_server.url}/onboarding/callback/",
                audiences=AUDIENCES,
            )
        )
        credential_secret_add(application=application, secret=demo.CLIENT_SECRET)
        yield application
        msal_apps_clear()
        cache.clear()
