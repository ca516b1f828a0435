"""All mutable state of one sandbox process: the clock, codes, refresh tokens, sign-in sessions,
consents, tenant policies, secret overrides, faults and counters.

Single process, single event loop: handlers never await while they read-modify-write this state,
so no locks are needed. `reset()` returns everything to the directory as loaded.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.directory import GDAP_AUTO_EXTEND, App, Directory, Gdap, Settings, User, VaultConfig
from sandbox.faults import FaultBook
from sandbox.vault_state import new_vault

CODE_LIFETIME = 600  # authorization codes live 10 minutes (entra-protocol.md 1.3)
LOG_LIMIT = 10_000
DAY = 86400.0
PENDING_LIFETIME = 1800  # a sign-in page left open longer than this must be reloaded


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    tenant_id: str  # the tenant the user signed in to
    user_oid: str
    scopes: tuple[str, ...]  # as requested on /authorize (full resource scopes + OIDC scopes)
    resource: str | None  # v1 authorize `resource=`
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    amr: tuple[str, ...]
    issued_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    client_id: str
    user_oid: str
    home_tenant_id: str
    amr: tuple[str, ...]
    auth_time: float
    issued_at: float
    scopes: tuple[str, ...]  # of the original sign-in: the default target when a refresh names none
    used: bool = False


@dataclass
class Session:
    """A browser sign-in session (cookie), what `prompt=none` relies on."""

    user_oid: str
    amr: tuple[str, ...]
    issued_at: float


@dataclass
class Pending:
    """An authorize request waiting on the sign-in/consent page."""

    params: dict[str, str]
    tenant_ref: str
    v1: bool
    created: float
    kind: str = "authorize"  # or "adminconsent"


@dataclass
class RuntimeSettings:
    access_token_lifetime: tuple[int, int]
    refresh_token_max_inactive: int
    strict_refresh_token_rotation: bool
    gdap_page_size: int

    @classmethod
    def from_directory(cls, s: Settings) -> RuntimeSettings:
        return cls(
            s.access_token_lifetime,
            s.refresh_token_max_inactive,
            s.strict_refresh_token_rotation,
            s.gdap_page_size,
        )


@dataclass
class Relationship:
    """A GDAP relationship as it stands now: its status moves with the sandbox clock (`advance`) and
    the control API (end, terminate, a new end date). Times are sandbox epoch seconds."""

    id: str
    partner_id: str
    customer_id: str
    display_name: str
    groups: frozenset[str]
    roles: tuple[str, ...]
    duration_days: int
    auto_extend: str
    status: str
    created_at: float
    activated_at: float | None
    end_at: float | None
    modified_at: float

    @classmethod
    def from_directory(cls, g: Gdap, now: float) -> Relationship:
        activated = now - g.activated_days_ago * DAY if g.activated_days_ago is not None else None
        if g.ended_days_ago is not None:
            end: float | None = now - g.ended_days_ago * DAY
        elif activated is not None:
            end = activated + g.duration_days * DAY
        else:
            end = None
        created = now - g.created_days_ago * DAY
        ended = g.status in ("expired", "terminated") and end is not None
        relationship = cls(
            id=g.id,
            partner_id=g.partner_id,
            customer_id=g.customer_id,
            display_name=g.display_name,
            groups=g.groups,
            roles=g.roles,
            duration_days=g.duration_days,
            auto_extend=g.auto_extend,
            status=g.status,
            created_at=created,
            activated_at=activated,
            end_at=end,
            modified_at=(end if ended else activated if activated is not None else created) or created,
        )
        relationship.advance(now)
        return relationship

    def advance(self, now: float) -> None:
        """An active relationship at its end date is extended by its autoExtendDuration, as often as
        needed, or expires (Graph: `PT0S` "expires when the endDateTime is reached"). The sandbox
        skips the transitional `expiring`: access ends exactly at the end date (the stricter choice)."""
        if self.status != "active" or self.end_at is None or self.end_at > now:
            return
        extension = GDAP_AUTO_EXTEND[self.auto_extend] * DAY
        if extension:
            while self.end_at <= now:
                self.end_at += extension
        else:
            self.status = "expired"
        self.modified_at = now

    @property
    def grants_access(self) -> bool:
        return self.status == "active"


@dataclass
class Counters:
    token_requests: Counter[str] = field(default_factory=Counter)
    by_grant_type: Counter[str] = field(default_factory=Counter)
    by_client: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    issued_by_user: Counter[str] = field(default_factory=Counter)
    issued_by_resource: Counter[str] = field(default_factory=Counter)
    issued_by_tenant: Counter[str] = field(default_factory=Counter)
    requests_by_endpoint: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)

    def public(self) -> dict[str, Any]:
        return {
            "token_requests": {
                "total": self.token_requests["total"],
                "by_grant_type": dict(self.by_grant_type),
                "by_client": dict(self.by_client),
                "by_status": dict(self.by_status),
            },
            "tokens_issued": {
                "total": sum(self.issued_by_tenant.values()),
                "by_user": dict(self.issued_by_user),
                "by_resource": dict(self.issued_by_resource),
                "by_tenant": dict(self.issued_by_tenant),
            },
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "faults_injected": dict(self.faults_injected),
        }


class SandboxState:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.faults = FaultBook()
        # A directory without [key_vault] has a vault in no tenant: every token is refused there.
        self.vault = new_vault(directory.key_vault or VaultConfig(tenant_id=""), time.time())
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        # A request still held by a latency or timeout fault when the state is reset belongs to the
        # state before: it is dropped when its delay ends (sandbox.web.apply_fault), so it can neither
        # redeem against nor count in the fresh state (a test that follows a timeout test).
        self.generation += 1
        self.clock_offset = 0.0
        self.settings = RuntimeSettings.from_directory(self.directory.settings)
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.sessions: dict[str, Session] = {}
        self.pending: dict[str, Pending] = {}
        self.assertion_jtis: dict[str, float] = {}
        # Tenant-wide (admin) consent: (tenant id, client id) -> full permission scopes; the directory
        # file's consented_apps are admin consent to every registered permission.
        self.admin_consents: dict[tuple[str, str], set[str]] = {
            (t.id, client_id): set(app.scopes())
            for t in self.directory.tenants.values()
            for client_id in t.consented_apps
            if (app := self.directory.apps.get(client_id))
        }
        # A user's own consent: (tenant id, client id, user oid) -> full permission scopes.
        self.user_consents: dict[tuple[str, str, str], set[str]] = {}
        # The application's service principal per tenant: (tenant id, client id) -> "disabled" | "removed".
        self.service_principals: dict[tuple[str, str], str] = {}
        # Test records, the newest LOG_LIMIT of each (benchmarks send hundreds of thousands of requests).
        self.authorize_log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.assertion_log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.secret_state: dict[tuple[str, str], str] = {}  # (client id, key id) -> "expired" | "deleted"
        self.tokens_valid_from: dict[str, float] = {}  # user oid -> revocation time
        self.mfa_required_tenants: set[str] = set()
        self.ca_blocked_tenants: set[str] = set()
        self.faults.clear()
        self.counters = Counters()
        self.vault.reset(self.now())
        # GDAP relationships, in the directory's order; clock-relative fields are anchored at reset.
        self.relationships: dict[str, Relationship] = {
            g.id: Relationship.from_directory(g, self.now()) for g in self.directory.gdap
        }

    def now(self) -> float:
        return time.time() + self.clock_offset

    # --- authorization codes and sessions --------------------------------------------------------

    def new_code(self, code: AuthCode) -> str:
        value = "1.sbx." + secrets.token_urlsafe(48)
        self.codes[value] = code
        return value

    def new_pending(self, pending: Pending) -> str:
        now = self.now()
        self.pending = {k: p for k, p in self.pending.items() if now - p.created < PENDING_LIFETIME}
        value = secrets.token_urlsafe(24)
        self.pending[value] = pending
        return value

    def new_session(self, session: Session) -> str:
        value = secrets.token_urlsafe(24)
        self.sessions[value] = session
        return value

    # --- refresh tokens ---------------------------------------------------------------------------

    def new_refresh_token(self, grant: RefreshGrant) -> str:
        value = "1.sbx.rt." + secrets.token_urlsafe(64)
        self.refresh_tokens[value] = grant
        return value

    def revoked_since(self, user_oid: str) -> float | None:
        return self.tokens_valid_from.get(user_oid)

    # --- app credentials and consent --------------------------------------------------------------

    def secret_matches(self, app: App, value: str) -> str:
        """ "ok", "expired", or "wrong" (deleted secrets no longer match, as in Entra)."""
        for s in app.secrets:
            status = self.secret_state.get((app.client_id, s.key_id))
            if status == "deleted" or not secrets.compare_digest(s.value.encode(), value.encode()):
                continue
            return "expired" if status == "expired" or s.expires <= self.now() else "ok"
        return "wrong"

    def granted(self, tenant_id: str, client_id: str, user_oid: str | None) -> set[str]:
        """Full permission scopes the app holds in the tenant: tenant-wide, plus the user's own consent."""
        scopes = set(self.admin_consents.get((tenant_id, client_id), ()))
        if user_oid is not None:
            scopes |= self.user_consents.get((tenant_id, client_id, user_oid), set())
        return scopes

    def granted_permissions(
        self, tenant_id: str, client_id: str, user_oid: str, resource: str
    ) -> frozenset[str]:
        prefix = resource + "/"
        return frozenset(
            s.removeprefix(prefix)
            for s in self.granted(tenant_id, client_id, user_oid)
            if s.startswith(prefix)
        )

    def app_in_tenant(self, tenant_id: str, client_id: str) -> bool:
        """The app has a service principal there: it is registered there, or someone consented and it
        was not removed since."""
        app = self.directory.apps.get(client_id)
        if app is not None and app.home_tenant == tenant_id:
            return True
        return bool(self.admin_consents.get((tenant_id, client_id))) or any(
            scopes for (t, c, _), scopes in self.user_consents.items() if (t, c) == (tenant_id, client_id)
        )

    def remove_consents(self, tenant_id: str, client_id: str) -> set[str]:
        """Withdraw tenant-wide and every user's consent; answers what was granted."""
        removed = self.admin_consents.pop((tenant_id, client_id), set())
        for key in [k for k in self.user_consents if k[:2] == (tenant_id, client_id)]:
            removed |= self.user_consents.pop(key)
        return removed

    # --- GDAP relationships -------------------------------------------------------------------------

    def relationships_of(self, partner_id: str) -> list[Relationship]:
        """The partner's relationships as they stand now, oldest first (a stable paging order)."""
        now = self.now()
        found = [r for r in self.relationships.values() if r.partner_id == partner_id]
        for relationship in found:
            relationship.advance(now)
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def active_relationships(self, partner_id: str, customer_id: str) -> list[Relationship]:
        return [
            r for r in self.relationships_of(partner_id) if r.customer_id == customer_id and r.grants_access
        ]

    def user_may_act_in(self, user: User, tenant_id: str) -> bool:
        """A user acts in their own tenant, or in a customer through a group of an active GDAP
        relationship that they belong to."""
        if user.tenant_id == tenant_id:
            return True
        return any(r.groups & user.groups for r in self.active_relationships(user.tenant_id, tenant_id))
