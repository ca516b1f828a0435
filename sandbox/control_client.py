"""Client side of the sandbox, for tests, benchmarks and scripts: start a sandbox process, drive
its control API (`SandboxClient`), and click through the sign-in page like a browser would.

Uses requests with timeouts, `trust_env=False` (no proxies) and the sandbox CA.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import msal
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0


class SandboxError(RuntimeError):
    pass


def session_for(ca_bundle: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle)
    return session


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"] or ""] = a.get("value") or ""


def parse_form(page: str) -> tuple[str | None, dict[str, str]]:
    """(form action, hidden fields) of the first form on a page."""
    parser = _FormParser()
    parser.feed(page)
    return parser.action, parser.fields


class SandboxClient:
    def __init__(self, base_url: str, ca_bundle: Path, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.http = session_for(ca_bundle)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.request(
            method, f"{self.base_url}/_sandbox{path}", json=body, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise SandboxError(f"{method} {path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/reset")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "/clock/advance", {"seconds": seconds})

    def settings(self, **values: Any) -> dict[str, Any]:
        return self._call("POST", "/settings", values)

    def revoke_sessions(self, user: str) -> dict[str, Any]:
        return self._call("POST", f"/users/{user}/revoke-sessions")

    def expire_refresh_tokens(self, user: str | None = None, client_id: str | None = None) -> dict[str, Any]:
        body = {k: v for k, v in (("user", user), ("client_id", client_id)) if v}
        return self._call("POST", "/refresh-tokens/expire", body)

    def tenant_policy(
        self, tenant: str, *, require_mfa: bool | None = None, block: bool | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("require_mfa", require_mfa), ("block", block)) if v is not None}
        return self._call("POST", f"/tenants/{tenant}/policy", body)

    def remove_consent(self, tenant: str, client_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tenants/{tenant}/consents/{client_id}")

    def gdap(self) -> list[dict[str, Any]]:
        """Every GDAP relationship as it stands now (status, end date, groups, roles)."""
        return list(self._call("GET", "/gdap")["relationships"])

    def gdap_expire(self, relationship: str) -> dict[str, Any]:
        """End an active relationship now (status expired). `relationship`: its id or display name."""
        return self._call("POST", f"/gdap/{quote(relationship, safe='')}/expire")

    def gdap_terminate(self, relationship: str, status: str = "terminated") -> dict[str, Any]:
        """Terminate an active relationship (or leave it terminationRequested / terminating)."""
        return self._call("POST", f"/gdap/{quote(relationship, safe='')}/terminate", {"status": status})

    def gdap_delete(self, relationship: str) -> dict[str, Any]:
        """Delete a relationship still in the created status (Graph allows no other)."""
        return self._call("DELETE", f"/gdap/{quote(relationship, safe='')}")

    def gdap_end_date(
        self, relationship: str, seconds_from_now: float, auto_extend: str | None = None
    ) -> dict[str, Any]:
        """Move an active relationship's end date (and, if given, its autoExtendDuration)."""
        body: dict[str, Any] = {"seconds_from_now": seconds_from_now}
        if auto_extend is not None:
            body["auto_extend"] = auto_extend
        return self._call("POST", f"/gdap/{quote(relationship, safe='')}/end-date", body)

    def keyvault(self) -> dict[str, Any]:
        """The vault: key ids per key (oldest first), secret names, role assignments, operation counts."""
        return self._call("GET", "/keyvault")

    def keyvault_rotate_key(self, name: str) -> str:
        """A new version of the key; answers its key id."""
        return str(self._call("POST", f"/keyvault/keys/{name}/rotate")["kid"])

    def keyvault_assign(self, principal: str, role: str, scope: str = "/") -> dict[str, Any]:
        return self._call(
            "PUT", "/keyvault/role-assignments", {"principal": principal, "role": role, "scope": scope}
        )

    def keyvault_unassign(self, principal: str, role: str = "*", scope: str = "/") -> dict[str, Any]:
        """Remove one role assignment; role "*" removes every assignment of the principal."""
        return self._call(
            "DELETE", "/keyvault/role-assignments", {"principal": principal, "role": role, "scope": scope}
        )

    def grant_consent(self, tenant: str, client_id: str) -> dict[str, Any]:
        """Tenant-wide admin consent to every registered permission of the app."""
        return self._call("PUT", f"/tenants/{tenant}/consents/{client_id}")

    def consent_state(self, tenant: str, client_id: str) -> dict[str, Any]:
        """`{"admin_consent": [scopes], "user_consents": {upn: [scopes]}}` of the app in the tenant."""
        return self._call("GET", f"/tenants/{tenant}/consents/{client_id}")

    def service_principal(self, tenant: str, client_id: str, state: str) -> dict[str, Any]:
        """`state`: "enabled", "disabled" (AADSTS7000112 there) or "removed" (AADSTS700016 there)."""
        return self._call("POST", f"/tenants/{tenant}/apps/{client_id}/service-principal", {"state": state})

    def authorize_requests(self) -> list[dict[str, Any]]:
        """Every authorize and adminconsent request since the last reset, with its PKCE method."""
        requests_: list[dict[str, Any]] = self._call("GET", "/authorize-requests")["requests"]
        return requests_

    def clear_authorize_requests(self) -> dict[str, Any]:
        return self._call("DELETE", "/authorize-requests")

    def client_assertions(self) -> list[dict[str, Any]]:
        """Accepted client assertions: `{"client_id", "alg", "thumbprint_header", "at"}`."""
        assertions: list[dict[str, Any]] = self._call("GET", "/client-assertions")["assertions"]
        return assertions

    def expire_secret(self, client_id: str, key_id: str = "all") -> dict[str, Any]:
        return self._call("POST", f"/apps/{client_id}/secrets/{key_id}/expire")

    def delete_secret(self, client_id: str, key_id: str = "all") -> dict[str, Any]:
        return self._call("DELETE", f"/apps/{client_id}/secrets/{key_id}")

    def add_fault(self, kind: str, **spec: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", {"kind": kind, **spec})

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/faults")

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/counters")

    def clear_counters(self) -> dict[str, Any]:
        return self._call("DELETE", "/counters")

    def sign_in(self, auth_uri: str, upn: str, *, mfa: bool = True, accept: bool = True) -> dict[str, str]:
        """Play the user on the sign-in page: returns the fields the browser would bring to the
        redirect URI (from the query, the fragment, or the form_post form)."""
        browser = session_for(self.ca_bundle)
        page = browser.get(auth_uri, timeout=self.timeout, allow_redirects=False)
        if page.status_code != 200:
            return _auth_response(page)
        action, fields = parse_form(page.text)
        if not action or "request" not in fields:
            raise SandboxError(f"no sign-in form on the page: {page.text[:300]}")
        form = {"request": fields["request"], "upn": upn, "action": "accept" if accept else "cancel"}
        if mfa:
            form["mfa"] = "done"
        return _auth_response(browser.post(action, data=form, timeout=self.timeout, allow_redirects=False))


def _auth_response(response: requests.Response) -> dict[str, str]:
    if response.status_code in (302, 303):
        parts = urlsplit(response.headers["Location"])
        return dict(parse_qsl(parts.fragment or parts.query))
    action, fields = parse_form(response.text)
    if response.status_code == 200 and ("code" in fields or "error" in fields):
        return fields
    raise SandboxError(f"the sign-in page answered {response.status_code}: {response.text[:500]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_sandbox(
    *, state_dir: Path, directory: Path | None = None, port: int | None = None, startup_timeout: float = 30.0
) -> Iterator[SandboxClient]:
    """Run `manage.py sandbox` in a subprocess on a free loopback port until the block exits."""
    port = port or free_port()
    cmd = [
        sys.executable,
        str(REPO_ROOT / "manage.py"),
        "sandbox",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
    ]
    if directory is not None:
        cmd += ["--directory", str(directory)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)  # noqa: S603 - our own interpreter and script
    client = SandboxClient(f"https://127.0.0.1:{port}", state_dir / "ca.pem")
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise SandboxError(f"the sandbox exited with status {process.returncode}")
            try:
                client.health()
                break
            except (requests.RequestException, OSError):
                if time.monotonic() > deadline:
                    raise SandboxError("the sandbox did not answer in time") from None
                time.sleep(0.1)
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_msal_app(
    client: SandboxClient, *, tenant: str | None = None, http_client: requests.Session | None = None
) -> msal.ConfidentialClientApplication:
    """A plain MSAL app for the demo registration against this sandbox, as a script would build it
    (benchmarks' baselines, bulk consent). `tenant` defaults to the demo partner, Contoso."""
    from sandbox import demo

    return msal.ConfidentialClientApplication(
        demo.CLIENT_ID,
        client_credential=demo.CLIENT_SECRET,
        authority=f"{client.base_url}/{tenant or demo.CONTOSO}",
        instance_discovery=False,
        azure_region=False,
        http_client=http_client or session_for(client.ca_bundle),
    )
