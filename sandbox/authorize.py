"""The authorize endpoint (v2 `/{tenant}/oauth2/v2.0/authorize`, v1 `/{tenant}/oauth2/authorize`)
and its sign-in and consent page.

GET validates the request. Errors about the client or the redirect URI are shown on the page (the
redirect URI cannot be trusted); every other error goes back to the redirect URI in Entra's format
with `state`. A valid request renders the page, which POSTs back here. The sandbox has no
passwords: picking an account is signing in; ticking "MFA completed" adds `mfa` to `amr` when the
user has a method registered. Consent is recorded per (tenant, application) for the resources asked
for (v1 asks for all the app's registered permissions, as v1 consent is static).
"""

from __future__ import annotations

import html
import re
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.catalog import RESOURCES, needs_admin_consent
from sandbox.directory import App, Tenant, User
from sandbox.errors import (
    EntraError,
    admin_consent_required,
    app_disabled,
    app_not_found,
    duplicate_parameter,
    entra_timestamp,
    error_fields,
    invalid_parameter,
    mfa_registration_required,
    missing_parameter,
    tenant_not_found,
)
from sandbox.scopes import check_registered, parse_scopes, requested_scopes
from sandbox.state import AuthCode, Pending, Session
from sandbox.tokens import client_info
from sandbox.web import Context, Params, apply_fault, ctx

PAGES = Path(__file__).resolve().parent / "pages"
SESSION_COOKIE = "sbx_session"
META_TENANTS = ("common", "organizations")
PROMPTS_V2 = ("login", "none", "consent", "select_account")
PROMPTS_V1 = (*PROMPTS_V2, "admin_consent")
RESPONSE_MODES = ("query", "fragment", "form_post")
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _page(name: str, status: int = 200, **values: str) -> HTMLResponse:
    template = string.Template((PAGES / name).read_text(encoding="utf-8"))
    return HTMLResponse(template.substitute(values), status_code=status)


class PageError(Exception):
    """An error shown on the Entra error page instead of being redirected."""

    def __init__(self, err: EntraError) -> None:
        super().__init__(str(err))
        self.err = err


@dataclass(frozen=True)
class Redirect:
    uri: str
    mode: str
    state: str | None


@dataclass(frozen=True)
class AuthorizeRequest:
    params: dict[str, str]
    tenant: Tenant | None
    tenant_ref: str
    app: App
    redirect: Redirect
    v1: bool
    scopes: tuple[str, ...]  # full resource scopes + OIDC scopes that consent covers
    resources: frozenset[str]
    consent: frozenset[str]  # the full permission scopes accepting grants (`.default` expanded)
    require_mfa: bool  # v1 `amr_values=mfa`


async def authorize(request: Request) -> Response:
    context = ctx(request)
    context.state.counters.requests_by_endpoint["authorize"] += 1
    fault = await apply_fault(request, "authorize")
    if fault is not None:
        return fault
    v1 = not request.url.path.endswith("/v2.0/authorize")
    try:
        if request.method == "POST":
            return await _submit(request, context)
        params = Params(list(request.query_params.multi_items()))
        redirect = validate_client(context, request.path_params["tenant"], params)
        context.state.authorize_log.append(
            authorize_record(
                context, "authorize", "v1" if v1 else "v2", request.path_params["tenant"], params
            )
        )
        try:
            auth = _validate(context, request.path_params["tenant"], params, redirect, v1)
        except EntraError as err:
            return error_redirect(context, request, redirect, err)
        if auth.params.get("prompt") == "none":
            return _silent(context, request, auth)
        return render_page(
            context,
            auth,
            context.state.new_pending(Pending(auth.params, auth.tenant_ref, v1, context.state.now())),
        )
    except PageError as exc:
        return error_page(context, request, exc.err)


def validate_client(context: Context, tenant_ref: str, params: Params) -> Redirect:
    """Checks whose failure is shown on the page: tenant, client_id, redirect_uri."""
    directory = context.state.directory
    tenant = directory.tenant(tenant_ref)
    try:
        if tenant is None and tenant_ref.lower() not in META_TENANTS:
            raise tenant_not_found(tenant_ref)
        client_id = params.require("client_id")
        app = directory.apps.get(client_id.lower())
        if app is None:
            raise app_not_found(client_id, tenant.name if tenant else tenant_ref)
        redirect_uri = params.get("redirect_uri")
        if not app.redirect_uris:
            raise EntraError("invalid_request", 500113, "No reply address is registered for the application.")
        if redirect_uri is None:
            raise missing_parameter("redirect_uri")
        if redirect_uri not in app.redirect_uris:
            raise EntraError(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{app.client_id}'. Make sure the redirect URI sent in the request "
                "matches one added to your application in the Azure portal. Navigate to "
                "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
            )
    except EntraError as err:
        raise PageError(err) from err
    mode = params.first("response_mode")
    return Redirect(redirect_uri, mode if mode in RESPONSE_MODES else "query", params.first("state"))


def _validate(
    context: Context, tenant_ref: str, params: Params, redirect: Redirect, v1: bool
) -> AuthorizeRequest:
    directory = context.state.directory
    tenant = directory.tenant(tenant_ref)
    duplicated = params.duplicated()
    if duplicated:
        raise duplicate_parameter(duplicated)
    values = params.single_values()
    app = directory.apps[params.require("client_id").lower()]
    response_type = params.require("response_type")
    if response_type != "code":
        raise EntraError(
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application.",
        )
    mode = params.get("response_mode")
    if mode is not None and mode not in RESPONSE_MODES:
        raise invalid_parameter("response_mode", mode)
    prompt = params.get("prompt")
    if prompt is not None and prompt not in (PROMPTS_V1 if v1 else PROMPTS_V2):
        raise invalid_parameter("prompt", prompt)
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if method is not None and (challenge is None or method not in ("S256", "plain")):
        raise invalid_parameter("code_challenge_method", method)
    if challenge is not None and (method or "plain") == "S256" and not S256_CHALLENGE.match(challenge):
        raise invalid_parameter("code_challenge", challenge)
    tenant_name = tenant.name if tenant else tenant_ref
    amr_values = params.get("amr_values")
    if v1:
        resource = params.get("resource")
        if resource is not None and resource.rstrip("/") not in RESOURCES:
            parse_scopes(f"{resource}/x", tenant_name)  # raises Entra's invalid_resource
        oidc = parse_scopes(params.get("scope") or "", tenant_name).oidc
        # v1 consent is static: every permission of the app registration.
        consent = frozenset(app.scopes())
        scopes = (*sorted(consent), *sorted(oidc | {"offline_access"}))
    else:
        if amr_values is not None:
            # Microsoft documents amr_values for the v1 endpoint only (its PartnerConsent sample); the v2
            # authorize reference does not list it. Sources are silent on v2: the sandbox refuses it, so a
            # client cannot believe it forced MFA (docs/sandbox.md).
            raise invalid_parameter("amr_values", amr_values)
        scope = params.require("scope")
        parsed = parse_scopes(scope, tenant_name)
        check_registered(app, parsed, scope)
        scopes = tuple(scope.split())
        consent = frozenset(requested_scopes(app, parsed))
    resources = frozenset(uri for s in scopes if "/" in s for uri in parse_scopes(s, tenant_name).by_resource)
    require_mfa = v1 and "mfa" in (amr_values or "").split()
    return AuthorizeRequest(
        values, tenant, tenant_ref, app, redirect, v1, scopes, resources, consent, require_mfa
    )


def authorize_record(
    context: Context, endpoint: str, version: str, tenant_ref: str, params: Params
) -> dict[str, object]:
    """What the sandbox remembers of an authorize request, for tests (control API `authorize-requests`)."""
    challenge = params.first("code_challenge")
    return {
        "endpoint": endpoint,
        "version": version,
        "tenant": tenant_ref,
        "client_id": params.first("client_id"),
        "redirect_uri": params.first("redirect_uri"),
        "scope": params.first("scope"),
        "pkce": bool(challenge),
        "code_challenge_method": (params.first("code_challenge_method") or "plain") if challenge else None,
        "prompt": params.first("prompt"),
        "at": context.state.now(),
    }


def _revalidate(context: Context, pending: Pending) -> AuthorizeRequest:
    params = Params(list(pending.params.items()))
    redirect = validate_client(context, pending.tenant_ref, params)
    return _validate(context, pending.tenant_ref, params, redirect, pending.v1)


# --- page and submission -----------------------------------------------------------------------


def _candidates(context: Context, auth: AuthorizeRequest) -> list[User]:
    tenants = [auth.tenant] if auth.tenant else list(context.state.directory.tenants.values())
    return [u for t in tenants for u in t.users]


def render_page(
    context: Context,
    auth: AuthorizeRequest,
    request_id: str,
    error: str = "",
    status: int = 200,
    *,
    endpoint: str | None = None,
) -> Response:
    """The sign-in and consent page; `endpoint` is where it posts (default: this authorize endpoint)."""
    users = _candidates(context, auth)
    hint = (auth.params.get("login_hint") or "").lower()
    if auth.params.get("prompt") == "select_account":
        hint = ""
    accounts = []
    for i, user in enumerate(users):
        detail = ", ".join(sorted(user.pc_roles)) or "no Partner Center role"
        detail += "".join(f", {role}" for role in sorted(user.directory_roles))
        detail += "".join(f", own group '{name}'" for name in user.self_made_groups)
        detail += "; MFA registered" if user.mfa_registered else "; no MFA method registered"
        checked = " checked" if user.upn.lower() == hint else ""
        accounts.append(
            f'<div><input type="radio" name="account" id="account-{i}" value="{html.escape(user.upn)}"{checked}>'
            f' <label for="account-{i}">{html.escape(user.display_name)} ({html.escape(user.upn)}) - '
            f"{html.escape(detail)}</label></div>"
        )
    listed = {u.upn.lower() for u in users}
    permissions = []
    for s in auth.scopes:
        if "/" not in s:
            continue
        uri, _, perm = s.rpartition("/")
        resource = RESOURCES[uri.rstrip("/")]
        perms = sorted(auth.app.permissions.get(resource.uri, ())) if perm == ".default" else [perm]
        permissions += [
            f"<li>{html.escape(resource.describe(p))} ({html.escape(resource.display_name)})</li>"
            for p in perms
        ]
    permissions += ["<li>Sign you in and read your basic profile</li>"] if "openid" in auth.scopes else []
    permissions += (
        ["<li>Keep access to data you have given it access to</li>"]
        if "offline_access" in auth.scopes
        else []
    )
    return _page(
        "signin.html",
        status,
        app_name=html.escape(auth.app.display_name),
        client_id=html.escape(auth.app.client_id),
        tenant_name=html.escape(auth.tenant.name if auth.tenant else "your organization"),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        action=html.escape(
            endpoint or f"{context.base_url}/{auth.tenant_ref}/oauth2/{'' if auth.v1 else 'v2.0/'}authorize"
        ),
        request_id=html.escape(request_id),
        accounts="\n".join(accounts),
        typed_upn=html.escape(hint if hint and hint not in listed else ""),
        mfa_checked="",
        permissions="\n".join(permissions),
    )


def pending_request(context: Context, form: Params, kind: str) -> tuple[str, Pending]:
    """The page request a form submission belongs to, or the error page when it is gone."""
    request_id = form.first("request") or ""
    pending = context.state.pending.get(request_id)
    if pending is None or pending.kind != kind:
        raise PageError(
            EntraError(
                "invalid_request",
                90014,
                "This sign-in page has expired or was already used. Start the sign-in again.",
            )
        )
    return request_id, pending


async def _submit(request: Request, context: Context) -> Response:
    form = Params.from_body(await request.body())
    request_id, pending = pending_request(context, form, "authorize")
    try:
        auth = _revalidate(context, pending)
    except EntraError as err:  # the directory cannot change, so this only guards against a bug
        raise PageError(err) from err
    if form.first("action") != "accept":
        del context.state.pending[request_id]
        denied = EntraError("access_denied", 65004, "User declined to consent to access the app.")
        return error_redirect(context, request, auth.redirect, denied, extra={"error_subcode": "cancel"})
    upn = (form.first("upn") or "").strip() or (form.first("account") or "")
    if not upn:
        return render_page(context, auth, request_id, "Choose an account or type a user name.", 400)
    user = context.state.directory.user_by_upn(upn)
    if user is None or (auth.tenant is not None and user.tenant_id != auth.tenant.id):
        where = auth.tenant.name if auth.tenant else "any"
        return render_page(
            context,
            auth,
            request_id,
            f"AADSTS50034: The user account {upn} does not exist in the {where} directory.",
            400,
        )
    mfa = form.first("mfa") == "done"
    tenant = context.state.directory.tenants[user.tenant_id]
    mfa_needed = tenant.id in context.state.mfa_required_tenants or auth.require_mfa
    if mfa_needed and not user.mfa_registered:
        # Entra interrupts such a sign-in to register security info (AADSTS50072, interactive); the
        # sandbox has no registration page and answers as Entra does when the sign-in ends without a
        # method: AADSTS50079 to the application, whatever the MFA box says (docs/sandbox.md).
        del context.state.pending[request_id]
        first = min(auth.resources, default=None)
        denied = mfa_registration_required(RESOURCES[first].app_id if first else auth.app.client_id, v1=True)
        return error_redirect(context, request, auth.redirect, denied)
    if mfa and not user.mfa_registered:
        return render_page(
            context, auth, request_id, f"{user.upn} has no MFA method registered; sign in without MFA.", 400
        )
    if mfa_needed and not mfa:
        return render_page(
            context,
            auth,
            request_id,
            "Your organization requires multi-factor authentication: complete it.",
            400,
        )
    del context.state.pending[request_id]
    amr = ("pwd", "mfa") if mfa else ("pwd",)
    if tenant.id in context.state.ca_blocked_tenants:
        denied = EntraError(
            "access_denied",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does "
            "not allow token issuance.",
            suberror="message_only",
        )
        return error_redirect(context, request, auth.redirect, denied)
    if context.state.service_principals.get((tenant.id, auth.app.client_id)) == "disabled":
        raise PageError(app_disabled(auth.app.client_id, auth.app.display_name))
    missing = {s for s in auth.consent if needs_admin_consent(s)} - context.state.granted(
        tenant.id, auth.app.client_id, None
    )
    admin_prompt = auth.params.get("prompt") == "admin_consent"  # v1 only (validated above)
    if (missing or admin_prompt) and not user.consent_admin:
        return error_redirect(context, request, auth.redirect, admin_consent_required(auth.app.display_name))
    if admin_prompt:
        context.state.admin_consents.setdefault((tenant.id, auth.app.client_id), set()).update(auth.consent)
    # The user's own consent; it (re)creates the app's service principal in the tenant if it was removed.
    context.state.user_consents.setdefault((tenant.id, auth.app.client_id, user.oid), set()).update(
        auth.consent
    )
    context.state.service_principals.pop((tenant.id, auth.app.client_id), None)
    session = context.state.new_session(Session(user.oid, amr, context.state.now()))
    response = _code_redirect(context, auth, user, amr)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, secure=True, samesite="lax")
    return response


def _silent(context: Context, request: Request, auth: AuthorizeRequest) -> Response:
    """prompt=none: answer from the browser session without showing anything (entra-protocol.md 1.4)."""
    state = context.state
    session = state.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
    user = state.directory.user_by_oid(session.user_oid) if session else None
    revoked = state.revoked_since(session.user_oid) if session else None
    hint = (auth.params.get("login_hint") or "").lower()
    if (
        session is None
        or user is None
        or (revoked is not None and session.issued_at < revoked)
        or (auth.tenant is not None and user.tenant_id != auth.tenant.id)
        or (hint and hint != user.upn.lower())
    ):
        denied = EntraError(
            "login_required", 50058, "A silent sign-in request was sent but no user is signed in."
        )
        return error_redirect(context, request, auth.redirect, denied)
    if user.tenant_id in state.ca_blocked_tenants:
        denied = EntraError(
            "interaction_required",
            53003,
            "Access has been blocked by Conditional Access policies.",
            suberror="message_only",
        )
        return error_redirect(context, request, auth.redirect, denied)
    if user.tenant_id in state.mfa_required_tenants and "mfa" not in session.amr:
        denied = EntraError(
            "interaction_required",
            50076,
            "Due to a configuration change made by your administrator, "
            "or because you moved to a new location, you must use multi-factor authentication.",
            suberror="basic_action",
        )
        return error_redirect(context, request, auth.redirect, denied)
    if not auth.consent <= state.granted(user.tenant_id, auth.app.client_id, user.oid):
        denied = EntraError(
            "consent_required",
            65001,
            "The user or administrator has not consented to use the "
            f"application with ID '{auth.app.client_id}' named '{auth.app.display_name}'.",
            suberror="consent_required",
        )
        return error_redirect(context, request, auth.redirect, denied)
    return _code_redirect(context, auth, user, session.amr)


# --- answers to the client ---------------------------------------------------------------------


def _code_redirect(context: Context, auth: AuthorizeRequest, user: User, amr: tuple[str, ...]) -> Response:
    p = auth.params
    code = context.state.new_code(
        AuthCode(
            client_id=auth.app.client_id,
            redirect_uri=auth.redirect.uri,
            tenant_id=user.tenant_id,
            user_oid=user.oid,
            scopes=auth.scopes,
            resource=p.get("resource"),
            nonce=p.get("nonce"),
            code_challenge=p.get("code_challenge"),
            code_challenge_method=(p.get("code_challenge_method") or "plain")
            if p.get("code_challenge")
            else None,
            amr=amr,
            issued_at=context.state.now(),
        )
    )
    fields = {"code": code}
    if p.get("client_info") == "1":
        fields["client_info"] = client_info(user)
    if auth.redirect.state is not None:
        fields["state"] = auth.redirect.state
    if auth.v1:
        fields["session_state"] = str(uuid.uuid4())
        if p.get("prompt") == "admin_consent":
            fields["admin_consent"] = "True"
    return to_client(auth.redirect, fields)


def error_redirect(
    context: Context,
    request: Request,
    redirect: Redirect,
    err: EntraError,
    extra: dict[str, str] | None = None,
) -> Response:
    body = error_fields(
        err,
        now=context.state.now(),
        base_url=context.base_url,
        correlation_id=request.query_params.get("client-request-id"),
    )
    fields = {
        "error": err.error,
        "error_description": body["error_description"],
        "error_uri": body["error_uri"],
    }
    if err.suberror:
        fields["suberror"] = err.suberror
    fields.update(extra or {})
    if redirect.state is not None:
        fields["state"] = redirect.state
    return to_client(redirect, fields)


def to_client(redirect: Redirect, fields: dict[str, str]) -> Response:
    if redirect.mode == "form_post":
        inputs = "\n".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        return _page("form_post.html", action=html.escape(redirect.uri), fields=inputs)
    separator = "#" if redirect.mode == "fragment" else ("&" if "?" in redirect.uri else "?")
    return RedirectResponse(f"{redirect.uri}{separator}{urlencode(fields)}", status_code=302)


def error_page(context: Context, request: Request, err: EntraError) -> Response:
    trace_id = str(uuid.uuid4())
    return _page(
        "error.html",
        400,
        message=html.escape(f"AADSTS{err.code}: {err.message}"),
        trace_id=trace_id,
        correlation_id=html.escape(request.query_params.get("client-request-id") or str(uuid.uuid4())),
        timestamp=entra_timestamp(context.state.now()),
    )
