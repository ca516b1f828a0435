"""Many partner tenants for renewal tests and benchmarks: a directory file with N extra partners
(the demo directory plus one admin agent per generated tenant) and one real refresh token per
partner, obtained through the sign-in page and MSAL like any consent.

Each grant needs its own partner tenant: the panel keeps one grant per (partner, application) and
redeems in the partner's tenant, which the sandbox must know. Tenant ids are uuid5 of the index,
so a directory written twice is the same directory.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sandbox import demo
from sandbox.control_client import SandboxClient, demo_msal_app, session_for
from sandbox.directory import DEMO_DIRECTORY

_NAMESPACE = uuid.UUID("0b4c1e52-6a43-4f5e-9d8e-5d0c2b6a7e11")


@dataclass(frozen=True)
class BulkPartner:
    tenant_id: str
    name: str
    domain: str
    upn: str
    oid: str


def bulk_partners(count: int) -> list[BulkPartner]:
    partners = []
    for index in range(count):
        domain = f"bulk{index:05d}.onmicrosoft.com"
        partners.append(
            BulkPartner(
                tenant_id=str(uuid.uuid5(_NAMESPACE, f"tenant-{index}")),
                name=f"Bulk Partner {index:05d}",
                domain=domain,
                upn=f"admin@{domain}",
                oid=str(uuid.uuid5(_NAMESPACE, f"user-{index}")),
            )
        )
    return partners


def bulk_directory_write(path: Path, partners: list[BulkPartner]) -> Path:
    """The demo directory plus the given partner tenants, each with one MFA-registered admin agent and
    tenant-wide admin consent to the demo app already granted (as in Contoso)."""
    lines = [DEMO_DIRECTORY.read_text()]
    for partner in partners:
        lines.append(
            f'\n[[tenants]]\nid = "{partner.tenant_id}"\nname = "{partner.name}"\n'
            f'domain = "{partner.domain}"\nkind = "partner"\nconsented_apps = ["{demo.CLIENT_ID}"]\n\n'
            f'[[tenants.users]]\noid = "{partner.oid}"\nupn = "{partner.upn}"\n'
            f'display_name = "Admin {partner.name}"\ngroups = ["AdminAgents"]\nmfa_registered = true\n'
        )
    path.write_text("".join(lines))
    # The demo file names its certificates and the vault's imported key relative to itself; the copy
    # sits elsewhere.
    (path.parent / "demo").mkdir(exist_ok=True)
    for source in (demo.CERT_PATH, demo.KEY_PATH, demo.HOST_CERT_PATH):
        (path.parent / "demo" / source.name).write_text(source.read_text())
    return path


def bulk_refresh_tokens(client: SandboxClient, partners: list[BulkPartner], *, threads: int = 8) -> list[str]:
    """Sign each partner's admin agent in (with MFA, accepting consent) and redeem the code: one
    refresh token per partner, in the order given. The authority names the partner's tenant: the
    sign-in page of `organizations` lists every account of the directory, thousands here."""
    http = session_for(client.ca_bundle)

    def consent(partner: BulkPartner) -> str:
        app = demo_msal_app(client, tenant=partner.tenant_id, http_client=http)
        flow = app.initiate_auth_code_flow([demo.PARTNER_CENTER_SCOPE], redirect_uri=demo.REDIRECT_URI)
        result = app.acquire_token_by_auth_code_flow(flow, client.sign_in(flow["auth_uri"], partner.upn))
        if "refresh_token" not in result:
            raise RuntimeError(f"consent of {partner.upn} failed: {result.get('error_description')}")
        return str(result["refresh_token"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(consent, partners))
