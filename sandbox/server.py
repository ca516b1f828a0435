"""The sandbox server: one Starlette app served by uvicorn over TLS, in one process with in-memory
state (a single event loop keeps state consistent; async lets injected latency not block others).

Never mounted in the panel's URLConf; started by `python manage.py sandbox`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandbox import (
    admin_consent,
    authorize,
    control,
    control_keyvault,
    discovery,
    gdap,
    keyvault,
    partner_roles,
    resources,
    token_endpoint,
)
from sandbox.ca import ensure_tls_files
from sandbox.directory import load_directory
from sandbox.errors import EntraError
from sandbox.keys import load_signing_key
from sandbox.signing import Signer
from sandbox.state import SandboxState
from sandbox.tokens import Minter
from sandbox.web import TRANSPORT_KEY, Context, entra_error

log = logging.getLogger(__name__)

T = "/{tenant}"
ROUTES = [
    *control.ROUTES,
    *control_keyvault.ROUTES,
    Route("/common/discovery/instance", discovery.instance_discovery, methods=["GET"]),
    Route("/common/discovery/keys", discovery.jwks, methods=["GET"]),
    Route("/v1/customers", resources.pc_customers, methods=["GET"]),
    Route("/v1/profiles/organization", resources.pc_organization_profile, methods=["GET"]),
    Route("/v1/roles", partner_roles.roles, methods=["GET"]),
    Route("/v1/roles/{role_id}/usermembers", partner_roles.role_user_members, methods=["GET"]),
    Route("/v1.0/organization", resources.graph_organization, methods=["GET"]),
    Route("/v1.0/me", resources.graph_me, methods=["GET"]),
    Route("/v1.0/me/memberOf", resources.graph_me_member_of, methods=["GET"]),
    Route(gdap.LIST_PATH, gdap.relationships_list, methods=["GET"]),
    Route(
        f"{gdap.LIST_PATH}/{{relationship_id}}/accessAssignments",
        gdap.access_assignments_list,
        methods=["GET"],
    ),
    # Key Vault's data plane; the vault's URL is the sandbox's base URL (docs/sandbox.md).
    Route("/keys/{name}", keyvault.get_key, methods=["GET"]),
    Route("/keys/{name}/{version}", keyvault.get_key, methods=["GET"]),
    *(
        Route(f"/keys/{{name}}{version}/{operation}", handler, methods=["POST"])
        for version in ("/{version}", "")
        for operation, handler in (
            ("wrapkey", keyvault.wrap_key),
            ("unwrapkey", keyvault.unwrap_key),
            ("sign", keyvault.sign),
        )
    ),
    Route("/secrets/{name}", keyvault.get_secret, methods=["GET"]),
    Route("/secrets/{name}/{version}", keyvault.get_secret, methods=["GET"]),
    Route(f"{T}/v2.0/.well-known/openid-configuration", discovery.openid_configuration_v2, methods=["GET"]),
    Route(f"{T}/.well-known/openid-configuration", discovery.openid_configuration_v1, methods=["GET"]),
    Route(f"{T}/discovery/v2.0/keys", discovery.jwks, methods=["GET"]),
    Route(f"{T}/discovery/keys", discovery.jwks, methods=["GET"]),
    Route(f"{T}/oauth2/v2.0/authorize", authorize.authorize, methods=["GET", "POST"]),
    Route(f"{T}/v2.0/adminconsent", admin_consent.admin_consent, methods=["GET", "POST"]),
    Route(f"{T}/oauth2/authorize", authorize.authorize, methods=["GET", "POST"]),
    Route(f"{T}/oauth2/v2.0/token", token_endpoint.token, methods=["POST"]),
    Route(f"{T}/oauth2/token", token_endpoint.token, methods=["POST"]),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405 and "/oauth2/" in request.url.path:
        err = EntraError("invalid_request", 900561, "The endpoint only accepts POST requests.", status=405)
        return entra_error(request, err)
    return JSONResponse(
        {"error": "not_found" if exc.status_code == 404 else "bad_request", "message": exc.detail},
        status_code=exc.status_code,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: Entra's server_error shape, never a stack trace. Logged here for the developer."""
    log.error("sandbox bug answering %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {
            "error": "server_error",
            "error_description": "AADSTS50000: There was an error issuing a token.",
            "error_codes": [50000],
            "trace_id": str(uuid.uuid4()),
        },
        status_code=500,
    )


def create_app(directory_path: Path, state_dir: Path, base_url: str, signing_processes: int = 0) -> Starlette:
    directory = load_directory(directory_path)
    key = load_signing_key(state_dir)
    signer = Signer(key.private_key, processes=signing_processes)
    app = Starlette(
        routes=ROUTES,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        on_shutdown=[signer.close],
    )
    app.state.sandbox = Context(
        state=SandboxState(directory), key=key, minter=Minter(key, base_url), signer=signer, base_url=base_url
    )
    return app


class _Protocol(HttpToolsProtocol):
    """Exposes the connection's transport to the app, so an injected fault can drop the connection."""

    def on_headers_complete(self) -> None:
        self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]
        super().on_headers_complete()


def run(*, host: str, port: int, directory_path: Path, state_dir: Path, signing_processes: int) -> None:
    tls = ensure_tls_files(state_dir)
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"https://{shown_host}:{port}"
    app = create_app(directory_path, state_dir, base_url, signing_processes)
    log.warning(
        "sandbox listening on %s (CA bundle %s, directory %s)", base_url, tls.ca_bundle, directory_path
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        loop="uvloop",
        http=_Protocol,
        log_level="warning",
        access_log=False,
        backlog=2048,
        timeout_keep_alive=30,
    )
