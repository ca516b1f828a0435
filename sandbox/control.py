"""The control API under `/_sandbox/`: JSON in, JSON out, loopback clients only (the peer address
is checked, whatever the bind address). Every endpoint is documented in docs/sandbox.md."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.directory import GDAP_AUTO_EXTEND, App, User
from sandbox.faults import FaultSpecError
from sandbox.gdap import graph_time
from sandbox.state import Counters, Relationship
from sandbox.web import Context, ctx, json_error

Handler = Callable[[Request, Context, dict[str, Any]], Response]


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        if not _loopback(request):
            return json_error(403, "forbidden", "The control API answers loopback clients only.")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise BadRequest("The body must be a JSON object.")
            return handler(request, ctx(request), body)
        except json.JSONDecodeError:
            return json_error(400, "bad_request", "The body is not valid JSON.")
        except (BadRequest, FaultSpecError) as exc:
            return json_error(getattr(exc, "status", 400), "bad_request", str(exc))

    return wrapped


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRequest(f"'{name}' must be a number.")
    return float(value)


def _user(context: Context, ref: str) -> User:
    user = context.state.directory.user_by_upn(ref) or context.state.directory.user_by_oid(ref.lower())
    if user is None:
        raise BadRequest(f"No user '{ref}' in the directory.", 404)
    return user


def _tenant_id(context: Context, ref: str) -> str:
    tenant = context.state.directory.tenant(ref)
    if tenant is None:
        raise BadRequest(f"No tenant '{ref}' in the directory.", 404)
    return tenant.id


def health(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse({"status": "ok", "base_url": context.base_url})


def status(request: Request, context: Context, body: dict[str, Any]) -> Response:
    state = context.state
    return JSONResponse(
        {
            "now": state.now(),
            "clock_offset_seconds": state.clock_offset,
            "settings": {
                "access_token_lifetime_seconds": list(state.settings.access_token_lifetime),
                "refresh_token_max_inactive_seconds": state.settings.refresh_token_max_inactive,
                "strict_refresh_token_rotation": state.settings.strict_refresh_token_rotation,
                "gdap_page_size": state.settings.gdap_page_size,
            },
            "mfa_required_tenants": sorted(state.mfa_required_tenants),
            "blocked_tenants": sorted(state.ca_blocked_tenants),
            "revoked_users": sorted(state.tokens_valid_from),
            "consents": sorted(f"{t}:{c}" for (t, c), scopes in state.admin_consents.items() if scopes),
            "service_principals": {
                f"{t}:{c}": value for (t, c), value in sorted(state.service_principals.items())
            },
            "faults": [f.public() for f in state.faults.active()],
        }
    )


def reset(request: Request, context: Context, body: dict[str, Any]) -> Response:
    context.state.reset()
    return status(request, context, body)


def advance_clock(request: Request, context: Context, body: dict[str, Any]) -> Response:
    seconds = _number(body, "seconds")
    if seconds < 0:
        raise BadRequest("The sandbox clock only moves forward.")
    context.state.clock_offset += seconds
    return JSONResponse({"now": context.state.now(), "clock_offset_seconds": context.state.clock_offset})


def update_settings(request: Request, context: Context, body: dict[str, Any]) -> Response:
    settings = context.state.settings
    if "strict_refresh_token_rotation" in body:
        if not isinstance(body["strict_refresh_token_rotation"], bool):
            raise BadRequest("'strict_refresh_token_rotation' must be true or false.")
        settings.strict_refresh_token_rotation = body["strict_refresh_token_rotation"]
    if "access_token_lifetime_seconds" in body:
        value = body["access_token_lifetime_seconds"]
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and v > 0 for v in value)
            and value[0] <= value[1]
        ):
            raise BadRequest("'access_token_lifetime_seconds' must be [min, max] positive integers.")
        settings.access_token_lifetime = (value[0], value[1])
    if "refresh_token_max_inactive_seconds" in body:
        settings.refresh_token_max_inactive = int(_number(body, "refresh_token_max_inactive_seconds"))
    if "gdap_page_size" in body:
        value = body["gdap_page_size"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 300:
            raise BadRequest("'gdap_page_size' must be an integer from 1 to 300.")
        settings.gdap_page_size = value
    return status(request, context, body)


def revoke_sessions(request: Request, context: Context, body: dict[str, Any]) -> Response:
    user = _user(context, request.path_params["user"])
    context.state.tokens_valid_from[user.oid] = context.state.now()
    return JSONResponse({"user": user.upn, "oid": user.oid, "tokens_valid_from": context.state.now()})


def expire_refresh_tokens(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """Backdate matching refresh tokens past the inactivity limit; their next use gets AADSTS700082."""
    state = context.state
    oid = _user(context, body["user"]).oid if body.get("user") else None
    client_id = body.get("client_id")
    limit = state.settings.refresh_token_max_inactive
    count = 0
    for grant in state.refresh_tokens.values():
        if (oid is None or grant.user_oid == oid) and (client_id is None or grant.client_id == client_id):
            grant.issued_at = min(grant.issued_at, state.now() - limit - 1)
            count += 1
    return JSONResponse({"expired": count})


def tenant_policy(request: Request, context: Context, body: dict[str, Any]) -> Response:
    tid = _tenant_id(context, request.path_params["tenant"])
    for name, target in (
        ("require_mfa", context.state.mfa_required_tenants),
        ("block", context.state.ca_blocked_tenants),
    ):
        if name in body:
            if not isinstance(body[name], bool):
                raise BadRequest(f"'{name}' must be true or false.")
            (target.add if body[name] else target.discard)(tid)
    return JSONResponse(
        {
            "tenant": tid,
            "require_mfa": tid in context.state.mfa_required_tenants,
            "block": tid in context.state.ca_blocked_tenants,
        }
    )


def _app(context: Context, client_id: str) -> App:
    app = context.state.directory.apps.get(client_id.lower())
    if app is None:
        raise BadRequest("No such app registration.", 404)
    return app


def remove_consent(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """Withdraw the tenant-wide and every user's consent to the app in the tenant."""
    tid = _tenant_id(context, request.path_params["tenant"])
    client_id = request.path_params["client_id"].lower()
    removed = context.state.remove_consents(tid, client_id)
    resources = sorted({scope.rpartition("/")[0] for scope in removed})
    return JSONResponse(
        {
            "tenant": tid,
            "client_id": client_id,
            "removed_resources": resources,
            "removed_scopes": sorted(removed),
        }
    )


def grant_consent(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """Tenant-wide admin consent to every permission of the app registration."""
    tid = _tenant_id(context, request.path_params["tenant"])
    app = _app(context, request.path_params["client_id"])
    context.state.admin_consents[(tid, app.client_id)] = set(app.scopes())
    context.state.service_principals.pop((tid, app.client_id), None)
    return JSONResponse(
        {
            "tenant": tid,
            "client_id": app.client_id,
            "resources": sorted(app.permissions),
            "scopes": app.scopes(),
        }
    )


def consent_state(request: Request, context: Context, body: dict[str, Any]) -> Response:
    tid = _tenant_id(context, request.path_params["tenant"])
    app = _app(context, request.path_params["client_id"])
    state = context.state
    users: dict[str, list[str]] = {}
    for (t, c, oid), scopes in state.user_consents.items():
        if (t, c) == (tid, app.client_id) and scopes:
            user = state.directory.user_by_oid(oid)
            users[user.upn if user else oid] = sorted(scopes)
    return JSONResponse(
        {
            "tenant": tid,
            "client_id": app.client_id,
            "admin_consent": sorted(state.admin_consents.get((tid, app.client_id), ())),
            "user_consents": users,
        }
    )


SERVICE_PRINCIPAL_STATES = ("enabled", "disabled", "removed")


def service_principal(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """The app's service principal in one tenant: disabled (AADSTS7000112 there) or removed (its
    consents go with it; AADSTS700016 there until someone consents again)."""
    tid = _tenant_id(context, request.path_params["tenant"])
    app = _app(context, request.path_params["client_id"])
    value = body.get("state")
    if value not in SERVICE_PRINCIPAL_STATES:
        raise BadRequest(f"'state' must be one of {', '.join(SERVICE_PRINCIPAL_STATES)}.")
    key = (tid, app.client_id)
    if value == "enabled":
        context.state.service_principals.pop(key, None)
    else:
        context.state.service_principals[key] = value
        if value == "removed":
            context.state.remove_consents(tid, app.client_id)
    return JSONResponse({"tenant": tid, "client_id": app.client_id, "state": value})


def authorize_requests(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse({"requests": list(context.state.authorize_log)})


def clear_authorize_requests(request: Request, context: Context, body: dict[str, Any]) -> Response:
    context.state.authorize_log.clear()
    return JSONResponse({"requests": []})


def client_assertions(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse({"assertions": list(context.state.assertion_log)})


def _secret_action(request: Request, context: Context, action: str) -> Response:
    app = _app(context, request.path_params["client_id"])
    key_id = request.path_params["key_id"].lower()
    matched = [s.key_id for s in app.secrets if key_id in ("all", s.key_id)]
    if not matched:
        raise BadRequest(f"No secret '{key_id}' on app {app.client_id}.", 404)
    for k in matched:
        context.state.secret_state[(app.client_id, k)] = action
    return JSONResponse({"client_id": app.client_id, "secrets": matched, "state": action})


def expire_secret(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return _secret_action(request, context, "expired")


def delete_secret(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return _secret_action(request, context, "deleted")


def add_fault(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse(context.state.faults.add(body).public(), status_code=201)


def list_faults(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse({"faults": [f.public() for f in context.state.faults.active()]})


def clear_faults(request: Request, context: Context, body: dict[str, Any]) -> Response:
    context.state.faults.clear()
    return JSONResponse({"faults": []})


def _relationship_public(context: Context, r: Relationship) -> dict[str, Any]:
    return {
        "id": r.id,
        "display_name": r.display_name,
        "partner": r.partner_id,
        "customer": r.customer_id,
        "customer_name": context.state.directory.tenants[r.customer_id].name,
        "status": r.status,
        "activated_date_time": graph_time(r.activated_at),
        "end_date_time": graph_time(r.end_at),
        "auto_extend": r.auto_extend,
        "groups": sorted(r.groups),
        "roles": list(r.roles),
    }


def _relationship(context: Context, ref: str) -> Relationship:
    """A relationship by id, or by display name (names are unique per partner, and in the demo overall)."""
    state = context.state
    found = state.relationships.get(ref) or next(
        (r for r in state.relationships.values() if r.display_name.lower() == ref.lower()), None
    )
    if found is None:
        raise BadRequest(f"No GDAP relationship '{ref}'.", 404)
    found.advance(state.now())
    return found


def gdap_list(request: Request, context: Context, body: dict[str, Any]) -> Response:
    relationships = [r for t in context.state.directory.tenants for r in context.state.relationships_of(t)]
    return JSONResponse({"relationships": [_relationship_public(context, r) for r in relationships]})


def gdap_expire(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """End an active relationship now, as its end date would (status expired, endDateTime now)."""
    r = _relationship(context, request.path_params["relationship"])
    if r.status not in ("active", "expiring"):
        raise BadRequest(f"Only an active relationship can expire; this one is {r.status}.")
    now = context.state.now()
    r.status, r.end_at, r.modified_at = "expired", now, now
    return JSONResponse(_relationship_public(context, r))


TERMINATION_STATUSES = ("terminationRequested", "terminating", "terminated")


def gdap_terminate(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """The partner or the customer terminates an active relationship: `terminated` at once (endDateTime
    now), or left in `terminationRequested` / `terminating` with `{"status": ...}`."""
    r = _relationship(context, request.path_params["relationship"])
    target = body.get("status", "terminated")
    if target not in TERMINATION_STATUSES:
        raise BadRequest(f"'status' must be one of {', '.join(TERMINATION_STATUSES)}.")
    if r.status not in ("active", *TERMINATION_STATUSES[: TERMINATION_STATUSES.index(target)]):
        raise BadRequest(f"A {r.status} relationship cannot become {target}.")
    now = context.state.now()
    r.status, r.modified_at = target, now
    if target == "terminated":
        r.end_at = now
    return JSONResponse(_relationship_public(context, r))


def gdap_delete(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """The partner deletes a relationship, which Graph allows only while it is `created`: it is no
    longer listed."""
    r = _relationship(context, request.path_params["relationship"])
    if r.status != "created":
        raise BadRequest(f"Only a relationship in the created status can be deleted; this one is {r.status}.")
    del context.state.relationships[r.id]
    return JSONResponse(_relationship_public(context, r))


def gdap_end_date(request: Request, context: Context, body: dict[str, Any]) -> Response:
    """Move an active relationship's end date (`seconds_from_now`, > 0) and optionally its
    autoExtendDuration (`auto_extend`): a test aid, Graph's own clients cannot change either."""
    r = _relationship(context, request.path_params["relationship"])
    if r.status != "active":
        raise BadRequest(f"Only an active relationship has an end date to move; this one is {r.status}.")
    seconds = _number(body, "seconds_from_now")
    if seconds <= 0:
        raise BadRequest("'seconds_from_now' must be positive (use expire to end it now).")
    if "auto_extend" in body:
        if body["auto_extend"] not in GDAP_AUTO_EXTEND:
            raise BadRequest(f"'auto_extend' must be one of {', '.join(GDAP_AUTO_EXTEND)}.")
        r.auto_extend = body["auto_extend"]
    now = context.state.now()
    r.end_at, r.modified_at = now + seconds, now
    return JSONResponse(_relationship_public(context, r))


def counters(request: Request, context: Context, body: dict[str, Any]) -> Response:
    return JSONResponse(context.state.counters.public())


def clear_counters(request: Request, context: Context, body: dict[str, Any]) -> Response:
    context.state.counters = Counters()
    return JSONResponse(context.state.counters.public())


P = "/_sandbox"
ROUTES = [
    Route(f"{P}/health", endpoint(health), methods=["GET"]),
    Route(f"{P}/status", endpoint(status), methods=["GET"]),
    Route(f"{P}/reset", endpoint(reset), methods=["POST"]),
    Route(f"{P}/clock/advance", endpoint(advance_clock), methods=["POST"]),
    Route(f"{P}/settings", endpoint(update_settings), methods=["POST"]),
    Route(f"{P}/users/{{user}}/revoke-sessions", endpoint(revoke_sessions), methods=["POST"]),
    Route(f"{P}/refresh-tokens/expire", endpoint(expire_refresh_tokens), methods=["POST"]),
    Route(f"{P}/tenants/{{tenant}}/policy", endpoint(tenant_policy), methods=["POST"]),
    Route(f"{P}/tenants/{{tenant}}/consents/{{client_id}}", endpoint(remove_consent), methods=["DELETE"]),
    Route(f"{P}/tenants/{{tenant}}/consents/{{client_id}}", endpoint(grant_consent), methods=["PUT"]),
    Route(f"{P}/tenants/{{tenant}}/consents/{{client_id}}", endpoint(consent_state), methods=["GET"]),
    Route(
        f"{P}/tenants/{{tenant}}/apps/{{client_id}}/service-principal",
        endpoint(service_principal),
        methods=["POST"],
    ),
    Route(f"{P}/authorize-requests", endpoint(authorize_requests), methods=["GET"]),
    Route(f"{P}/authorize-requests", endpoint(clear_authorize_requests), methods=["DELETE"]),
    Route(f"{P}/client-assertions", endpoint(client_assertions), methods=["GET"]),
    Route(f"{P}/apps/{{client_id}}/secrets/{{key_id}}/expire", endpoint(expire_secret), methods=["POST"]),
    Route(f"{P}/apps/{{client_id}}/secrets/{{key_id}}", endpoint(delete_secret), methods=["DELETE"]),
    Route(f"{P}/faults", endpoint(add_fault), methods=["POST"]),
    Route(f"{P}/faults", endpoint(list_faults), methods=["GET"]),
    Route(f"{P}/faults", endpoint(clear_faults), methods=["DELETE"]),
    Route(f"{P}/gdap", endpoint(gdap_list), methods=["GET"]),
    Route(f"{P}/gdap/{{relationship}}/expire", endpoint(gdap_expire), methods=["POST"]),
    Route(f"{P}/gdap/{{relationship}}/terminate", endpoint(gdap_terminate), methods=["POST"]),
    Route(f"{P}/gdap/{{relationship}}/end-date", endpoint(gdap_end_date), methods=["POST"]),
    Route(f"{P}/gdap/{{relationship}}", endpoint(gdap_delete), methods=["DELETE"]),
    Route(f"{P}/counters", endpoint(counters), methods=["GET"]),
    Route(f"{P}/counters", endpoint(clear_counters), methods=["DELETE"]),
]
