"""The v2 admin consent endpoint, `/{tenant}/v2.0/adminconsent` (Microsoft Learn, "Admin consent on
the Microsoft identity platform"; entra-protocol.md 1.5).

GET validates `client_id`, `redirect_uri` (registered on the app, else an error page) and `scope`
(named permissions or one `.default`), then shows the sign-in page. A directory administrator who
accepts grants those permissions tenant-wide; the answer goes back to the redirect URI as
`admin_consent=True&tenant=<guid>&scope=<granted>&state=...`, no code. Cancel answers
`admin_consent=True&error=consent_required` with AADSTS65004, as in Microsoft's example. `common` is
refused ("don't use common"); `organizations` means the administrator's own tenant.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sandbox.authorize import (
    AuthorizeRequest,
    PageError,
    authorize_record,
    error_page,
    error_redirect,
    pending_request,
    render_page,
    to_client,
    validate_client,
)
from sandbox.errors import EntraError, app_disabled, invalid_parameter
from sandbox.scopes import check_registered, parse_scopes, requested_scopes
from sandbox.state import Pending
from sandbox.web import Context, Params, apply_fault, ctx


async def admin_consent(request: Request) -> Response:
    context = ctx(request)
    context.state.counters.requests_by_endpoint["adminconsent"] += 1
    fault = await apply_fault(request, "authorize")
    if fault is not None:
        return fault
    tenant_ref = request.path_params["tenant"]
    try:
        if request.method == "POST":
            return await _submit(request, context)
        params = Params(list(request.query_params.multi_items()))
        if tenant_ref.lower() == "common":
            raise PageError(invalid_parameter("tenant", tenant_ref))
        auth = _validate(context, request, tenant_ref, params)
        if isinstance(auth, Response):
            return auth
        pending = context.state.new_pending(
            Pending(auth.params, tenant_ref, False, context.state.now(), kind="adminconsent")
        )
        return render_page(context, auth, pending, endpoint=_endpoint(context, tenant_ref))
    except PageError as exc:
        return error_page(context, request, exc.err)


def _endpoint(context: Context, tenant_ref: str) -> str:
    return f"{context.base_url}/{tenant_ref}/v2.0/adminconsent"


def _validate(
    context: Context, request: Request, tenant_ref: str, params: Params, *, log: bool = True
) -> AuthorizeRequest | Response:
    redirect = validate_client(context, tenant_ref, params)
    if log:
        context.state.authorize_log.append(
            authorize_record(context, "adminconsent", "v2", tenant_ref, params)
        )
    tenant = context.state.directory.tenant(tenant_ref)
    app = context.state.directory.apps[params.require("client_id").lower()]
    try:
        duplicated = params.duplicated()
        if duplicated:
            raise invalid_parameter(duplicated, "(repeated)")
        scope = params.require("scope")
        parsed = parse_scopes(scope, tenant.name if tenant else tenant_ref)
        check_registered(app, parsed, scope)
        consent = frozenset(requested_scopes(app, parsed))
        if not consent:
            raise invalid_parameter("scope", scope)
    except EntraError as err:
        return error_redirect(context, request, redirect, err)
    return AuthorizeRequest(
        params.single_values(),
        tenant,
        tenant_ref,
        app,
        redirect,
        False,
        tuple(sorted(consent)),
        frozenset(),
        consent,
        False,
    )


async def _submit(request: Request, context: Context) -> Response:
    form = Params.from_body(await request.body())
    request_id, pending = pending_request(context, form, "adminconsent")
    auth = _validate(context, request, pending.tenant_ref, Params(list(pending.params.items())), log=False)
    if isinstance(auth, Response):  # the directory cannot change, so this only guards against a bug
        return auth
    endpoint = _endpoint(context, pending.tenant_ref)
    fields = {"admin_consent": "True"}
    if auth.redirect.state is not None:
        fields["state"] = auth.redirect.state
    if form.first("action") != "accept":
        del context.state.pending[request_id]
        fields["error"] = "consent_required"
        fields["error_description"] = (
            "AADSTS65004: The resource owner or authorization server denied the request."
        )
        return to_client(auth.redirect, fields)
    upn = (form.first("upn") or "").strip() or (form.first("account") or "")
    user = context.state.directory.user_by_upn(upn) if upn else None
    if user is None or (auth.tenant is not None and user.tenant_id != auth.tenant.id):
        return render_page(
            context,
            auth,
            request_id,
            f"AADSTS50034: The user account {upn} does not exist here.",
            400,
            endpoint=endpoint,
        )
    if not user.consent_admin:
        return render_page(
            context,
            auth,
            request_id,
            f"AADSTS90094: {user.upn} is not an administrator: only an administrator can grant permission to "
            f"{auth.app.display_name} for the whole organization.",
            403,
            endpoint=endpoint,
        )
    key = (user.tenant_id, auth.app.client_id)
    if context.state.service_principals.get(key) == "disabled":
        raise PageError(app_disabled(auth.app.client_id, auth.app.display_name))
    del context.state.pending[request_id]
    context.state.admin_consents.setdefault(key, set()).update(auth.consent)
    context.state.service_principals.pop(key, None)  # consent (re)creates a removed service principal
    fields.update(tenant=user.tenant_id, scope=" ".join(sorted(auth.consent)))
    return to_client(auth.redirect, fields)
