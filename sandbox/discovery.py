"""OIDC discovery (v2 and v1, per tenant and for common/organizations), JWKS and instance discovery
(entra-protocol.md 6). Endpoint URLs name the tenant GUID when asked by domain, as Entra does."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.errors import EntraError, tenant_not_found
from sandbox.web import apply_fault, ctx, entra_error

META_TENANTS = ("common", "organizations")
CACHE = {"Cache-Control": "max-age=86400, private", "Access-Control-Allow-Origin": "*"}


def _tenant_segment(request: Request) -> str:
    ref = request.path_params["tenant"]
    if ref.lower() in META_TENANTS:
        return ref.lower()
    tenant = ctx(request).state.directory.tenant(ref)
    if tenant is None:
        raise tenant_not_found(ref, error="invalid_tenant")
    return tenant.id


async def _prelude(request: Request) -> Response | None:
    ctx(request).state.counters.requests_by_endpoint["discovery"] += 1
    return await apply_fault(request, "discovery")


async def openid_configuration_v2(request: Request) -> Response:
    fault = await _prelude(request)
    if fault:
        return fault
    try:
        tid = _tenant_segment(request)
    except EntraError as err:
        return entra_error(request, err)
    base = ctx(request).base_url
    issuer_tid = "{tenantid}" if tid in META_TENANTS else tid
    doc: dict[str, Any] = {
        "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tid}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{base}/{tid}/kerberos",
        "tenant_region_scope": None if tid in META_TENANTS else "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
    return JSONResponse(doc, headers=CACHE)


async def openid_configuration_v1(request: Request) -> Response:
    fault = await _prelude(request)
    if fault:
        return fault
    try:
        tid = _tenant_segment(request)
    except EntraError as err:
        return entra_error(request, err)
    base = ctx(request).base_url
    doc = {
        "token_endpoint": f"{base}/{tid}/oauth2/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/common/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": f"https://sts.windows.net/{'{tenantid}' if tid in META_TENANTS else tid}/",
        "microsoft_multi_refresh_token": True,
        "authorization_endpoint": f"{base}/{tid}/oauth2/authorize",
        "device_authorization_endpoint": f"{base}/{tid}/oauth2/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tid}/oauth2/logout",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }
    return JSONResponse(doc, headers=CACHE)


async def jwks(request: Request) -> Response:
    fault = await _prelude(request)
    if fault:
        return fault
    context = ctx(request)
    ref = request.path_params.get("tenant", "common")
    if ref.lower() not in META_TENANTS and context.state.directory.tenant(ref) is None:
        return entra_error(request, tenant_not_found(ref, error="invalid_tenant"))
    return JSONResponse({"keys": [context.key.jwk(f"{context.base_url}/{{tenantid}}/v2.0")]}, headers=CACHE)


async def instance_discovery(request: Request) -> Response:
    fault = await _prelude(request)
    if fault:
        return fault
    context = ctx(request)
    endpoint = request.query_params.get("authorization_endpoint", "")
    own_host = urlsplit(context.base_url).hostname or ""
    host = urlsplit(endpoint).hostname or ""
    if host not in (own_host, "localhost", "127.0.0.1", "::1"):
        return entra_error(request, EntraError("invalid_instance", 50049, "Unknown or invalid instance."))
    parts = urlsplit(endpoint).path.strip("/").split("/")
    tenant = parts[0] if parts and parts[0] else "common"
    aliases = sorted({own_host, host})
    return JSONResponse(
        {
            "tenant_discovery_endpoint": f"{context.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": request.query_params.get("api-version", "1.1"),
            "metadata": [{"preferred_network": own_host, "preferred_cache": own_host, "aliases": aliases}],
        },
        headers=CACHE,
    )
