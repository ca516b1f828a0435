"""`POST /{tenant}/oauth2/v2.0/token` and the v1 `POST /{tenant}/oauth2/token`.

Grants: authorization_code (single use, 10 minutes, bound to client, tenant, redirect URI and PKCE
verifier), refresh_token (multi-resource and cross-tenant: one partner RT yields tokens for every
consented resource, in the partner tenant and in GDAP customers), client_credentials. Every answer
is Entra's JSON (v2 numbers as integers, v1 as strings) or Entra's error body.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.catalog import RESOURCES, Resource, resource_by_uri_or_app_id
from sandbox.client_auth import AuthenticatedClient, authenticate_client
from sandbox.directory import Tenant, User
from sandbox.errors import (
    EntraError,
    app_disabled,
    app_not_found,
    blocked_by_conditional_access,
    consent_required,
    invalid_grant_malformed,
    mfa_registration_required,
    mfa_required,
    missing_parameter,
    tenant_not_found,
)
from sandbox.faults import TENANT_KINDS
from sandbox.scopes import parse_scopes, single_resource
from sandbox.state import CODE_LIFETIME, RefreshGrant
from sandbox.tokens import client_info, s256
from sandbox.web import Context, Params, apply_fault, ctx, entra_error, entra_json

META_TENANTS = ("common", "organizations")
PKCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class TokenRequest:
    context: Context
    params: Params
    client: AuthenticatedClient
    tenant: Tenant | None  # None for common/organizations
    tenant_ref: str
    v1: bool


async def token(request: Request) -> Response:
    context = ctx(request)
    counters = context.state.counters
    counters.requests_by_endpoint["token"] += 1
    params = Params.from_body(await request.body())
    counters.token_requests["total"] += 1
    counters.by_grant_type[params.first("grant_type") or "(missing)"] += 1
    counters.by_client[params.first("client_id") or "(missing)"] += 1
    response = await apply_fault(request, "token")
    if response is None:
        try:
            response = entra_json(await context.signer.sign_body(_handle(request, context, params)))
        except EntraError as err:
            response = entra_error(request, err)
    counters.by_status[str(response.status_code)] += 1
    return response


def _handle(request: Request, context: Context, params: Params) -> dict[str, Any]:
    v1 = not request.url.path.endswith("/v2.0/token")
    tenant_ref = request.path_params["tenant"]
    tenant = context.state.directory.tenant(tenant_ref)
    if tenant is None and tenant_ref.lower() not in META_TENANTS:
        raise tenant_not_found(tenant_ref)
    grant_type = params.require("grant_type")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise EntraError("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    if not v1 and params.get("resource") is not None:
        raise EntraError("invalid_request", 901002, "The 'resource' request parameter is not supported.")
    refs = {tenant_ref} | ({tenant.id, tenant.domain} if tenant else set())
    base = context.base_url
    audiences = {f"{base}/{ref}/oauth2/{path}" for ref in refs for path in ("v2.0/token", "token")}
    client = authenticate_client(
        context.state,
        params,
        authorization=request.headers.get("authorization"),
        tenant_name=tenant.name if tenant else tenant_ref,
        audiences=audiences,
    )
    return handler(TokenRequest(context, params, client, tenant, tenant_ref, v1))


# --- grants ---------------------------------------------------------------------------------------


def _authorization_code(req: TokenRequest) -> dict[str, Any]:
    state = req.context.state
    value = req.params.require("code")
    redirect_uri = req.params.require("redirect_uri")
    code = state.codes.get(value)
    if code is None:
        raise invalid_grant_malformed()
    if code.redeemed:
        raise EntraError(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
            "existing refresh token.",
        )
    if code.client_id != req.client.app.client_id:
        raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed.")
    if req.tenant is not None and req.tenant.id != code.tenant_id:
        raise EntraError(
            "invalid_grant",
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        )
    code.redeemed = True  # a code is burnt by its first redemption attempt by the right client
    if state.now() - code.issued_at > CODE_LIFETIME:
        raise EntraError(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new "
            "interactive authorization request for this user and resource.",
        )
    if redirect_uri != code.redirect_uri:
        # UNCERTAIN code: Entra's text for a redemption with another redirect URI is not in the reference.
        raise EntraError(
            "invalid_grant",
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI "
            "used to obtain the authorization code.",
        )
    if code.code_challenge is not None:
        verifier = req.params.get("code_verifier") or ""
        computed = s256(verifier) if code.code_challenge_method == "S256" else verifier
        if (
            not (43 <= len(verifier) <= 128 and set(verifier) <= PKCE_CHARS)
            or computed != code.code_challenge
        ):
            raise EntraError(
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            )
    user = _user(req, code.user_oid)
    resource, permissions, oidc = _target(req, default_scopes=code.scopes, default_resource=code.resource)
    grant = RefreshGrant(
        client_id=code.client_id,
        user_oid=user.oid,
        home_tenant_id=user.tenant_id,
        amr=code.amr,
        auth_time=code.issued_at,
        issued_at=state.now(),
        scopes=code.scopes,
    )
    return _issue(
        req,
        user=user,
        tenant_id=code.tenant_id,
        resource=resource,
        permissions=permissions,
        oidc=oidc,
        grant=grant,
        nonce=code.nonce,
    )


def _refresh_token(req: TokenRequest) -> dict[str, Any]:
    state = req.context.state
    value = req.params.require("refresh_token")
    grant = state.refresh_tokens.get(value)
    if grant is None:
        raise invalid_grant_malformed()
    if grant.client_id != req.client.app.client_id:
        raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed.")
    if grant.used and state.settings.strict_refresh_token_rotation:
        # Sandbox switch, not Entra behaviour: Entra keeps used refresh tokens valid (entra-protocol.md 2.3).
        raise EntraError(
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed. The refresh token was already used.",
            suberror="bad_token",
        )
    revoked_at = state.revoked_since(grant.user_oid)
    if revoked_at is not None and grant.auth_time < revoked_at:
        raise EntraError(
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user "
            "might have changed or reset their password. The grant was issued on "
            f"'{_iso(grant.auth_time)}' and the TokensValidFrom date (before which tokens are not valid) for "
            f"this user is '{_iso(revoked_at)}'.",
            suberror="bad_token",
        )
    max_inactive = state.settings.refresh_token_max_inactive
    if state.now() - grant.issued_at > max_inactive:
        raise EntraError(
            "invalid_grant",
            700082,
            f"The refresh token has expired due to inactivity. The token was issued on {_iso(grant.issued_at)} "
            f"and was inactive for {_duration(max_inactive)}.",
        )
    user = _user(req, grant.user_oid)
    tenant_id = req.tenant.id if req.tenant else user.tenant_id
    resource, permissions, oidc = _target(req, default_scopes=grant.scopes, default_resource=None)
    grant.used = True
    successor = replace(grant, issued_at=state.now(), used=False)
    return _issue(
        req,
        user=user,
        tenant_id=tenant_id,
        resource=resource,
        permissions=permissions,
        oidc=oidc,
        grant=successor,
        nonce=None,
    )


def _client_credentials(req: TokenRequest) -> dict[str, Any]:
    state = req.context.state
    if req.tenant is None:
        raise EntraError(
            "invalid_request",
            900023,
            f"Specified tenant identifier '{req.tenant_ref}' is neither a valid DNS name, nor a valid external domain.",
        )
    app = req.client.app
    _check_service_principal(req, req.tenant)
    if not state.app_in_tenant(req.tenant.id, app.client_id):
        raise app_not_found(app.client_id, req.tenant.name)
    if req.v1:
        resource = _v1_resource(req.params.require("resource"), req.tenant.name)
    else:
        scope = req.params.require("scope")
        parsed = parse_scopes(scope, req.tenant.name)
        uri = single_resource(parsed, scope)
        if uri is None or parsed.oidc or parsed.by_resource[uri] != {".default"}:
            raise EntraError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = RESOURCES[uri]
    lifetime = _lifetime(req)
    now = state.now()
    access_token = req.context.minter.app_access_token(
        tenant_id=req.tenant.id,
        resource=resource,
        client_id=app.client_id,
        appidacr=req.client.appidacr,
        now=now,
        lifetime=lifetime,
    )
    state.counters.issued_by_resource[resource.uri] += 1
    state.counters.issued_by_tenant[req.tenant.id] += 1
    state.counters.issued_by_user[f"app:{app.client_id}"] += 1
    body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime}
    if req.v1:
        body = {k: str(v) for k, v in body.items()} | {
            "expires_on": str(int(now) + lifetime),
            "not_before": str(int(now) - 300),
            "resource": resource.uri,
        }
    body["access_token"] = access_token
    return body


GRANTS = {
    "authorization_code": _authorization_code,
    "refresh_token": _refresh_token,
    "client_credentials": _client_credentials,
}


# --- shared ---------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    """.NET TimeSpan text, as in Entra's messages: 90 days -> "90.00:00:00"."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}.{hours:02}:{rest // 60:02}:{rest % 60:02}"


def _lifetime(req: TokenRequest) -> int:
    low, high = req.context.state.settings.access_token_lifetime
    return random.randint(low, high)  # noqa: S311 - Entra randomises lifetimes too; not security relevant


def _user(req: TokenRequest, oid: str) -> User:
    user = req.context.state.directory.user_by_oid(oid)
    if user is None:  # the directory is immutable, so this means a bug, not bad input
        raise invalid_grant_malformed()
    return user


def _v1_resource(value: str, tenant_name: str) -> Resource:
    resource = resource_by_uri_or_app_id(value)
    if resource is None:
        raise EntraError(
            "invalid_resource",
            500011,
            f"The resource principal named {value} was not found in the tenant named {tenant_name}. This can "
            "happen if the application has not been installed by the administrator of the tenant or consented "
            "to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
        )
    return resource


def _target(
    req: TokenRequest, *, default_scopes: tuple[str, ...], default_resource: str | None
) -> tuple[Resource, frozenset[str], frozenset[str]]:
    """(resource, requested permissions, OIDC scopes) of a user-token request.

    v1 names the resource with `resource=` (OIDC: `scope=openid` adds an id token). v2 takes one
    resource from `scope`; without resource scopes, the first resource of the original sign-in.
    """
    tenant_name = req.tenant.name if req.tenant else req.tenant_ref
    scope = req.params.get("scope")
    if req.v1:
        parsed = parse_scopes(scope or "", tenant_name)
        value = req.params.get("resource") or default_resource
        if value is None:
            raise missing_parameter("resource")
        # v1 answers with a refresh token always, and an id token when openid was asked for.
        return _v1_resource(value, tenant_name), frozenset({".default"}), parsed.oidc | {"offline_access"}
    if scope is None:
        if not default_scopes:
            raise missing_parameter("scope")
        scope = " ".join(default_scopes)
        parsed = parse_scopes(scope, tenant_name)
        first = next(iter(parsed.by_resource), None)
        if first is None:
            raise missing_parameter("scope")
        return RESOURCES[first], parsed.by_resource[first], parsed.oidc
    parsed = parse_scopes(scope, tenant_name)
    uri = single_resource(parsed, scope)
    if uri is None:
        first = next((s for s in default_scopes if "/" in s), None)
        if first is None:
            raise missing_parameter("scope")
        uri = parse_scopes(first, tenant_name).by_resource.popitem()[0]
        return RESOURCES[uri], frozenset({".default"}), parsed.oidc
    return RESOURCES[uri], parsed.by_resource[uri], parsed.oidc


def _check_service_principal(req: TokenRequest, tenant: Tenant) -> None:
    """The app's service principal in this tenant, disabled or removed there by its admin (control API);
    then an injected Entra error for this tenant (fault kind `aadsts`)."""
    app = req.client.app
    injected = req.context.state.faults.take("token", TENANT_KINDS, tenant=tenant.id)
    if injected is not None:
        req.context.state.counters.faults_injected[injected.kind] += 1
        raise EntraError(
            str(injected.error), int(injected.code or 0), "An error injected through the control API."
        )
    sp = req.context.state.service_principals.get((tenant.id, app.client_id))
    if sp == "disabled":
        raise app_disabled(app.client_id, app.display_name)
    if sp == "removed":
        raise app_not_found(app.client_id, tenant.name)


def _check_user_access(
    req: TokenRequest, user: User, tenant: Tenant, amr: tuple[str, ...], resource: Resource
) -> frozenset[str]:
    """Refuse the token, or answer the permissions of `resource` granted to the app for this user."""
    state = req.context.state
    app = req.client.app
    _check_service_principal(req, tenant)
    if not state.user_may_act_in(user, tenant.id):
        if tenant.kind == "customer" and not state.active_relationships(user.tenant_id, tenant.id):
            # No active GDAP relationship (none, or only ended or pending ones). UNCERTAIN error value;
            # the reference gives the code and text (entra-protocol.md 3.3, 90099). Which code Entra
            # answers for an expired or terminated relationship is not documented: the same one.
            raise EntraError(
                "invalid_grant",
                90099,
                f"The application '{app.display_name}' ({app.client_id}) has not been authorized in the tenant "
                f"'{tenant.id}'. Applications must be authorized to access the customer tenant before partner "
                "delegated administrators can use them. Provide pre-consent or execute the appropriate Partner "
                "Center API to authorize the application.",
            )
        raise EntraError(
            "invalid_grant",
            50020,
            f"User account '{user.upn}' from identity provider 'https://sts.windows.net/{user.tenant_id}/' does "
            f"not exist in tenant '{tenant.name}' and cannot access the application '{app.client_id}'"
            f"({app.display_name}) in that tenant.",
        )
    if tenant.id in state.ca_blocked_tenants:
        raise blocked_by_conditional_access(v1=req.v1)
    if tenant.id in state.mfa_required_tenants and "mfa" not in amr:
        # A user without an MFA method is asked to enroll (50079), one with a method to use it (50076).
        if not user.mfa_registered:
            raise mfa_registration_required(resource.app_id, v1=req.v1)
        raise mfa_required(resource.app_id, v1=req.v1)
    granted = state.granted_permissions(tenant.id, app.client_id, user.oid, resource.uri)
    if not granted:
        raise consent_required(app.client_id, app.display_name, tenant.id, resource.uri)
    return granted


def _issue(
    req: TokenRequest,
    *,
    user: User,
    tenant_id: str,
    resource: Resource,
    permissions: frozenset[str],
    oidc: frozenset[str],
    grant: RefreshGrant,
    nonce: str | None,
) -> dict[str, Any]:
    state, minter, app = req.context.state, req.context.minter, req.client.app
    tenant = state.directory.tenants[tenant_id]
    consented = _check_user_access(req, user, tenant, grant.amr, resource)
    if not (permissions - {".default"}) <= consented:
        raise consent_required(app.client_id, app.display_name, tenant.id, resource.uri)
    # Entra answers with every consented permission of the resource, not only the requested ones.
    granted = sorted(consented)
    lifetime = _lifetime(req)
    now = state.now()
    body: dict[str, Any] = {"token_type": "Bearer"}
    if req.v1:
        body.update(
            scope=" ".join(granted),
            expires_in=str(lifetime),
            ext_expires_in=str(lifetime),
            expires_on=str(int(now) + lifetime),
            not_before=str(int(now) - 300),
            resource=resource.uri,
        )
    else:
        scopes = [f"{resource.uri}/{p}" for p in granted] + sorted(oidc - {"offline_access"})
        if "offline_access" in oidc:
            scopes.append("offline_access")
        body.update(scope=" ".join(scopes), expires_in=lifetime, ext_expires_in=lifetime)
    body["access_token"] = minter.user_access_token(
        user=user,
        tenant_id=tenant_id,
        resource=resource,
        permissions=granted,
        client_id=app.client_id,
        appidacr=req.client.appidacr,
        amr=grant.amr,
        now=now,
        lifetime=lifetime,
    )
    if "offline_access" in oidc:
        body["refresh_token"] = state.new_refresh_token(grant)
    if "openid" in oidc:
        body["id_token"] = minter.id_token(
            user=user,
            tenant_id=tenant_id,
            client_id=app.client_id,
            amr=grant.amr,
            nonce=nonce,
            now=now,
            v1=req.v1,
        )
    if req.params.get("client_info") == "1":
        body["client_info"] = client_info(user)
    state.counters.issued_by_user[user.upn] += 1
    state.counters.issued_by_resource[resource.uri] += 1
    state.counters.issued_by_tenant[tenant_id] += 1
    return body
