"""The state of the sandbox's Key Vault (sandbox.keyvault serves it): key versions, secret
versions, Azure RBAC role assignments, and counts of the operations performed."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.directory import VaultConfig
from sandbox.tokens import service_principal_oid

# Built-in roles and the data actions the sandbox checks (Learn "Azure built-in roles for Key Vault
# data plane operations"; a role assigned on a key or secret reaches that object only).
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "Key Vault Administrator": frozenset(
        {"keys/read", "keys/wrap", "keys/unwrap", "keys/sign", "secrets/get"}
    ),
    "Key Vault Crypto Officer": frozenset({"keys/read", "keys/wrap", "keys/unwrap", "keys/sign"}),
    "Key Vault Crypto User": frozenset({"keys/read", "keys/wrap", "keys/unwrap", "keys/sign"}),
    "Key Vault Crypto Service Encryption User": frozenset({"keys/read", "keys/wrap", "keys/unwrap"}),
    "Key Vault Secrets User": frozenset({"secrets/get"}),
    "Key Vault Secrets Officer": frozenset({"secrets/get"}),
    "Key Vault Reader": frozenset({"keys/read"}),
}


@dataclass
class KeyVersion:
    version: str
    private_key: rsa.RSAPrivateKey
    created: int


@dataclass
class SecretVersion:
    version: str
    value: str
    created: int


@dataclass(frozen=True)
class Assignment:
    principal_oid: str
    role: str
    scope: str  # "/" (the vault), "keys/<name>" or "secrets/<name>"


@dataclass
class Vault:
    """Keys and secrets (versions oldest first) and role assignments. Generated RSA keys are kept
    across resets (a reset restores the directory's versions without paying for new keys)."""

    config: VaultConfig
    keys: dict[str, list[KeyVersion]] = field(default_factory=dict)
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    assignments: set[Assignment] = field(default_factory=set)
    operations: Counter[str] = field(default_factory=Counter)
    _initial: dict[str, KeyVersion] = field(default_factory=dict)

    def reset(self, now: float) -> None:
        self.keys = {}
        for spec in self.config.keys:
            initial = self._initial.get(spec.name)
            if initial is None:
                initial = KeyVersion(_version(), spec.private_key or _new_key(), int(now))
                self._initial[spec.name] = initial
            self.keys[spec.name] = [initial]
        self.secrets = {
            name: [SecretVersion(_version(), value, int(now))] for name, value in self.config.secrets.items()
        }
        self.assignments = {
            Assignment(service_principal_oid(a.client_id, self.config.tenant_id), a.role, a.scope)
            for a in self.config.assignments
        }
        self.operations = Counter()

    def rotate_key(self, name: str, now: float) -> KeyVersion:
        """A new version of an existing key (what `az keyvault key rotate` does)."""
        if name not in self.keys:
            raise KeyError(name)
        version = KeyVersion(_version(), _new_key(), int(now))
        self.keys[name].append(version)
        return version

    def allowed(self, oid: str, action: str, scope: str) -> bool:
        return any(
            a.principal_oid == oid
            and action in ROLE_ACTIONS.get(a.role, frozenset())
            and a.scope in ("/", scope)
            for a in self.assignments
        )


def new_vault(config: VaultConfig, now: float) -> Vault:
    vault = Vault(config)
    vault.reset(now)
    return vault


def _version() -> str:
    return uuid.uuid4().hex  # Key Vault versions are 32 hex digits


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
