"""The declarative directory: tenants, users, GDAP relationships and app registrations.

Loaded once at start from a TOML file (`directory.demo.toml` ships; `--directory` or the
`SANDBOX_DIRECTORY` environment variable point elsewhere). The loaded `Directory` is immutable;
the runtime changes made through the control API (expired secrets, removed consents) live in
`sandbox.state`, which re-reads from this object on reset. The format is documented in docs/sandbox.md.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.catalog import resource_by_uri_or_app_id

DEMO_DIRECTORY = Path(__file__).resolve().parent / "directory.demo.toml"
AGENT_GROUPS = ("AdminAgents", "SalesAgents", "HelpdeskAgents")
# Partner Center's partner-level agent roles. Partner Center keeps the AdminAgents / SalesAgents /
# HelpdeskAgents groups in step with them, so a user without an explicit `partner_center_roles` entry
# holds the roles of the Partner Center groups he is in; a group a user made himself never counts.
PC_ROLES = ("AdminAgent", "SalesAgent", "HelpdeskAgent")
_ROLE_OF_GROUP = dict(zip(AGENT_GROUPS, PC_ROLES, strict=True))
# Directory roles that may grant tenant-wide admin consent to delegated permissions (Microsoft Learn,
# "Grant tenant-wide admin consent to an application").
CONSENT_ADMIN_ROLES = frozenset(
    {
        "Global Administrator",
        "Privileged Role Administrator",
        "Cloud Application Administrator",
        "Application Administrator",
    }
)

_Item = TypeVar("_Item")


class DirectoryError(ValueError):
    """The directory file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class User:
    oid: str
    upn: str
    display_name: str
    tenant_id: str
    groups: frozenset[str]  # Partner Center's agent groups (and GDAP groups) the user is in
    mfa_registered: bool
    pc_roles: frozenset[str] = frozenset()  # Partner Center partner-level roles (PC_ROLES)
    directory_roles: frozenset[str] = frozenset()  # Entra directory roles, e.g. "Global Administrator"
    self_made_groups: tuple[str, ...] = ()  # security groups the user created himself (display names)

    @property
    def consent_admin(self) -> bool:
        return bool(self.directory_roles & CONSENT_ADMIN_ROLES)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    domain: str
    kind: str  # "partner" or "customer"
    consented_apps: frozenset[str]
    users: tuple[User, ...]


# The statuses of a GDAP relationship, as Microsoft Graph names them (delegatedAdminRelationshipStatus,
# without its evolvable-enum sentinel `unknownFutureValue`).
GDAP_STATUSES = (
    "created",
    "approvalPending",
    "approved",
    "activating",
    "active",
    "expiring",
    "expired",
    "terminationRequested",
    "terminating",
    "terminated",
)
# Statuses that follow an activation: they have an activatedDateTime (and, for the ended ones, an
# endDateTime in the past).
GDAP_ACTIVATED = frozenset(
    {"active", "expiring", "expired", "terminationRequested", "terminating", "terminated"}
)
# autoExtendDuration: Graph accepts `P0D`, `PT0S` (no extension, the default) and `P180D`.
GDAP_AUTO_EXTEND = {"PT0S": 0, "P0D": 0, "P180D": 180}
GDAP_MAX_DAYS = 730  # `duration` lies between P1D and P2Y inclusive
GDAP_NAME_MAX = 50
GLOBAL_READER_ROLE = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"


@dataclass(frozen=True)
class Gdap:
    """A GDAP relationship as the directory file declares it; its clock-dependent fields are relative
    to the sandbox's start (or reset), and its status moves with the sandbox clock (sandbox.state)."""

    partner_id: str
    customer_id: str
    # Partner-tenant security groups granted roles in the customer (its access assignments); members
    # may act there while the relationship is active.
    groups: frozenset[str]
    id: str
    display_name: str
    status: str
    roles: tuple[str, ...]  # unifiedRoles roleDefinitionId values
    duration_days: int
    auto_extend: str  # "PT0S", "P0D" or "P180D"
    created_days_ago: float
    activated_days_ago: float | None  # None before activation
    ended_days_ago: float | None  # terminated / terminating: when termination was asked


@dataclass(frozen=True)
class Secret:
    key_id: str
    value: str
    expires: float  # epoch seconds


@dataclass(frozen=True)
class Certificate:
    sha1: bytes
    sha256: bytes
    cert: x509.Certificate


@dataclass(frozen=True)
class App:
    client_id: str
    display_name: str
    redirect_uris: tuple[str, ...]
    secrets: tuple[Secret, ...]
    certificates: tuple[Certificate, ...]
    permissions: dict[str, frozenset[str]]  # resource URI -> delegated permissions
    # The tenant the app is registered in: its service principal exists there without any consent.
    home_tenant: str | None = None

    def scopes(self) -> list[str]:
        """Every registered delegated permission as a full scope (`https://graph.microsoft.com/User.Read`)."""
        return [f"{uri}/{p}" for uri, perms in self.permissions.items() for p in sorted(perms)]


@dataclass(frozen=True)
class VaultKey:
    name: str
    private_key: rsa.RSAPrivateKey | None  # imported (a certificate's key), or None: generated at start


@dataclass(frozen=True)
class VaultAssignment:
    client_id: str  # the principal (its service principal in the vault's tenant)
    role: str
    scope: str  # "/", "keys/<name>" or "secrets/<name>"


@dataclass(frozen=True)
class VaultConfig:
    tenant_id: str
    keys: tuple[VaultKey, ...] = ()
    secrets: dict[str, str] = field(default_factory=dict)
    assignments: tuple[VaultAssignment, ...] = ()


@dataclass(frozen=True)
class Settings:
    access_token_lifetime: tuple[int, int] = (3600, 5400)
    refresh_token_max_inactive: int = 90 * 86400
    strict_refresh_token_rotation: bool = False
    # The page size of Graph's GDAP lists when the client sends no `$top`. Microsoft documents the
    # maximum (300), not the default; the demo directory makes it small so that paging shows.
    gdap_page_size: int = 100


@dataclass(frozen=True)
class Directory:
    tenants: dict[str, Tenant]
    apps: dict[str, App]
    gdap: tuple[Gdap, ...]
    settings: Settings = field(default_factory=Settings)
    key_vault: VaultConfig | None = None

    def tenant(self, ref: str) -> Tenant | None:
        """Tenant by GUID or verified domain (case-insensitive), as Entra accepts both in URLs."""
        ref = ref.lower()
        return self.tenants.get(ref) or self._tenants_by_domain.get(ref)

    def user_by_upn(self, upn: str) -> User | None:
        return self._users_by_upn.get(upn.strip().lower())

    def user_by_oid(self, oid: str) -> User | None:
        return self._users_by_oid.get(oid)

    # Indexes, built on first use: a bench directory holds thousands of tenants, and every token
    # request looks up its tenant (or `organizations`, which is no tenant) and its user. The
    # directory is immutable (a reset replaces it), so they never go stale. First entry wins, as a
    # scan in file order would.
    @cached_property
    def _tenants_by_domain(self) -> dict[str, Tenant]:
        return _first_by(self.tenants.values(), lambda tenant: tenant.domain)

    @cached_property
    def _users_by_oid(self) -> dict[str, User]:
        return _first_by(self._users(), lambda user: user.oid)

    @cached_property
    def _users_by_upn(self) -> dict[str, User]:
        return _first_by(self._users(), lambda user: user.upn.lower())

    def _users(self) -> Iterator[User]:
        return (user for tenant in self.tenants.values() for user in tenant.users)

    def customers_of(self, partner_id: str) -> list[Tenant]:
        """The partner's customers, each once, in file order (Partner Center's customer list)."""
        ids = dict.fromkeys(g.customer_id for g in self.gdap if g.partner_id == partner_id)
        return [self.tenants[customer_id] for customer_id in ids]


def _first_by(items: Iterable[_Item], key: Callable[[_Item], str]) -> dict[str, _Item]:
    index: dict[str, _Item] = {}
    for item in items:
        index.setdefault(key(item), item)
    return index


def load_directory(path: Path) -> Directory:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return _parse(data, path.parent)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DirectoryError):
            raise
        raise DirectoryError(f"{path}: {exc!r}") from exc


def _guid(value: object, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise DirectoryError(f"{what}: {value!r} is not a GUID") from exc


def _parse(data: dict[str, Any], base: Path) -> Directory:
    tenants: dict[str, Tenant] = {}
    for t in data.get("tenants", []):
        tid = _guid(t["id"], "tenant id")
        users = tuple(_parse_user(u, tid) for u in t.get("users", []))
        kind = t.get("kind", "customer")
        if kind not in ("partner", "customer"):
            raise DirectoryError(f"tenant {tid}: kind must be 'partner' or 'customer'")
        tenants[tid] = Tenant(
            id=tid,
            name=t["name"],
            domain=t["domain"].lower(),
            kind=kind,
            consented_apps=frozenset(_guid(c, "consented app") for c in t.get("consented_apps", [])),
            users=users,
        )
    gdap = tuple(_parse_gdap(g, tenants) for g in data.get("gdap", []))
    seen: set[tuple[str, str]] = set()
    for g in gdap:
        # Graph: the display name "must be unique across all delegated admin relationships of the partner".
        for key in ((g.partner_id, g.display_name.lower()), ("id", g.id)):
            if key in seen:
                raise DirectoryError(f"gdap {g.display_name!r}: duplicate name or id for this partner")
            seen.add(key)
    apps = {a.client_id: a for a in (_parse_app(a, base) for a in data.get("apps", []))}
    s = data.get("settings", {})
    lifetime = s.get("access_token_lifetime_seconds", [3600, 5400])
    settings = Settings(
        access_token_lifetime=(int(lifetime[0]), int(lifetime[1])),
        refresh_token_max_inactive=int(s.get("refresh_token_max_inactive_seconds", 90 * 86400)),
        strict_refresh_token_rotation=bool(s.get("strict_refresh_token_rotation", False)),
        gdap_page_size=_page_size(s.get("gdap_page_size", 100)),
    )
    key_vault = _parse_vault(data["key_vault"], base, tenants, apps) if "key_vault" in data else None
    return Directory(tenants=tenants, apps=apps, gdap=gdap, settings=settings, key_vault=key_vault)


def _parse_gdap(g: dict[str, Any], tenants: dict[str, Tenant]) -> Gdap:
    partner_id = _guid(g["partner"], "gdap partner")
    customer_id = _guid(g["customer"], "gdap customer")
    if partner_id not in tenants or customer_id not in tenants:
        raise DirectoryError(f"gdap {partner_id} -> {customer_id}: unknown tenant")
    customer = tenants[customer_id]
    name = str(g.get("display_name", f"{customer.name} admin relationship"))
    where = f"gdap {name!r}"
    if not 0 < len(name) <= GDAP_NAME_MAX:
        raise DirectoryError(f"{where}: display_name must be 1 to {GDAP_NAME_MAX} characters")
    status = str(g.get("status", "active"))
    if status not in GDAP_STATUSES:
        raise DirectoryError(f"{where}: status must be one of {', '.join(GDAP_STATUSES)}")
    duration = str(g.get("duration", f"P{GDAP_MAX_DAYS}D"))
    days = _iso_days(duration)
    if days is None or not 1 <= days <= GDAP_MAX_DAYS:
        raise DirectoryError(f"{where}: duration must be P<n>D with n from 1 to {GDAP_MAX_DAYS}")
    auto_extend = str(g.get("auto_extend", "PT0S"))
    if auto_extend not in GDAP_AUTO_EXTEND:
        raise DirectoryError(f"{where}: auto_extend must be one of {', '.join(GDAP_AUTO_EXTEND)}")
    activated = g.get("activated_days_ago")
    if (activated is None) == (status in GDAP_ACTIVATED):
        raise DirectoryError(
            f"{where}: activated_days_ago is required for {', '.join(sorted(GDAP_ACTIVATED))}, "
            "and only for them"
        )
    ended = g.get("ended_days_ago")
    if (ended is None) == (status in ("terminating", "terminated")):
        raise DirectoryError(
            f"{where}: ended_days_ago is required for terminating and terminated, and only for them"
        )
    if ended is not None and activated is not None and float(ended) > float(activated):
        raise DirectoryError(f"{where}: ended_days_ago cannot be before the activation")
    if activated is not None:
        activated = float(activated)
        remaining = days - activated
        if status in ("expired", "expiring") and remaining > 0:
            raise DirectoryError(f"{where}: an expired relationship's duration must have run out")
        if status == "active" and remaining <= 0 and GDAP_AUTO_EXTEND[auto_extend] == 0:
            raise DirectoryError(f"{where}: this relationship has ended; declare it expired")
    roles = tuple(_guid(r, f"{where} role") for r in g.get("roles", [GLOBAL_READER_ROLE]))
    created = float(g.get("created_days_ago", (activated or 0.0) + 1.0))
    relationship_id = str(
        g.get(
            "id", f"{uuid.uuid5(uuid.NAMESPACE_URL, f'gdap/{partner_id}/{customer_id}/{name}')}-{partner_id}"
        )
    )
    return Gdap(
        partner_id=partner_id,
        customer_id=customer_id,
        groups=frozenset(g.get("groups", ["AdminAgents"])),
        id=relationship_id,
        display_name=name,
        status=status,
        roles=roles,
        duration_days=days,
        auto_extend=auto_extend,
        created_days_ago=created,
        activated_days_ago=activated,
        ended_days_ago=float(ended) if ended is not None else None,
    )


GDAP_MAX_PAGE = 300  # Graph: "$top supports up to 300 objects"


def _page_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= GDAP_MAX_PAGE:
        raise DirectoryError(f"gdap_page_size must be an integer from 1 to {GDAP_MAX_PAGE}")
    return value


def _iso_days(value: str) -> int | None:
    """Days of an ISO 8601 duration of whole days (`P730D`); None for any other form."""
    if len(value) < 3 or not value.startswith("P") or not value.endswith("D") or not value[1:-1].isdigit():
        return None
    return int(value[1:-1])


def _parse_vault(
    v: dict[str, Any], base: Path, tenants: dict[str, Tenant], apps: dict[str, App]
) -> VaultConfig:
    tenant_id = _guid(v["tenant"], "key_vault tenant")
    if tenant_id not in tenants:
        raise DirectoryError(f"key_vault: unknown tenant {tenant_id}")
    keys = []
    for k in v.get("keys", []):
        private_key = None
        if "import_path" in k:
            loaded = serialization.load_pem_private_key((base / k["import_path"]).read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise DirectoryError(f"key_vault key {k['name']}: only RSA keys are supported")
            private_key = loaded
        keys.append(VaultKey(name=str(k["name"]), private_key=private_key))
    assignments = []
    for a in v.get("role_assignments", []):
        client_id = _guid(a["principal"], "key_vault principal")
        if client_id not in apps:
            raise DirectoryError(f"key_vault role assignment: unknown app {client_id}")
        assignments.append(
            VaultAssignment(client_id=client_id, role=str(a["role"]), scope=str(a.get("scope", "/")))
        )
    secrets = {str(s["name"]): str(s["value"]) for s in v.get("secrets", [])}
    return VaultConfig(tenant_id=tenant_id, keys=tuple(keys), secrets=secrets, assignments=tuple(assignments))


def _parse_user(u: dict[str, Any], tenant_id: str) -> User:
    groups = frozenset(u.get("groups", []))
    roles = u.get("partner_center_roles")
    pc_roles = (
        frozenset(roles)
        if roles is not None
        else frozenset(_ROLE_OF_GROUP[g] for g in groups & set(AGENT_GROUPS))
    )
    if pc_roles - set(PC_ROLES):
        raise DirectoryError(f"user {u['upn']}: partner_center_roles must be among {PC_ROLES}")
    return User(
        oid=_guid(u["oid"], "user oid"),
        upn=u["upn"],
        display_name=u.get("display_name", u["upn"]),
        tenant_id=tenant_id,
        groups=groups,
        mfa_registered=bool(u.get("mfa_registered", False)),
        pc_roles=pc_roles,
        directory_roles=frozenset(u.get("directory_roles", [])),
        self_made_groups=tuple(u.get("self_made_groups", [])),
    )


def _parse_app(a: dict[str, Any], base: Path) -> App:
    client_id = _guid(a["client_id"], "app client_id")
    permissions: dict[str, frozenset[str]] = {}
    for uri, perms in a.get("permissions", {}).items():
        resource = resource_by_uri_or_app_id(uri)
        if resource is None:
            raise DirectoryError(f"app {client_id}: unknown resource {uri!r}")
        permissions[resource.uri] = frozenset(perms)
    secrets = tuple(
        Secret(
            key_id=_guid(s.get("key_id", uuid.uuid5(uuid.NAMESPACE_URL, s["value"])), "secret key_id"),
            value=s["value"],
            expires=_timestamp(s.get("expires", "2099-12-31T00:00:00Z")),
        )
        for s in a.get("secrets", [])
    )
    certificates = []
    for c in a.get("certificates", []):
        cert = x509.load_pem_x509_certificate((base / c["path"]).read_bytes())
        sha1 = cert.fingerprint(hashes.SHA1())  # noqa: S303 - the x5t thumbprint is SHA-1 by definition
        certificates.append(Certificate(sha1=sha1, sha256=cert.fingerprint(hashes.SHA256()), cert=cert))
    return App(
        client_id=client_id,
        display_name=a["display_name"],
        redirect_uris=tuple(a.get("redirect_uris", [])),
        secrets=secrets,
        certificates=tuple(certificates),
        permissions=permissions,
        home_tenant=_guid(a["home_tenant"], "app home_tenant") if "home_tenant" in a else None,
    )


def _timestamp(value: object) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=dt.UTC).timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
