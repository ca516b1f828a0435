"""The sandbox's local certificate authority and its TLS server certificate.

Generated on first run under the state directory (default `var/sandbox/`): `ca.pem` (the bundle
clients trust: `IDENTITY_CA_BUNDLE` points here), `ca-key.pem`, `server.pem`, `server-key.pem`.
The server certificate names 127.0.0.1, ::1 and localhost, and is re-issued when it is missing or
within 30 days of expiry. Files are written atomically, so two sandboxes starting at once (tests
and a bench) never read a half-written key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_bundle: Path
    cert: Path
    key: Path


def ensure_tls_files(state_dir: Path) -> TlsFiles:
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_bundle=state_dir / "ca.pem", cert=state_dir / "server.pem", key=state_dir / "server-key.pem"
    )
    ca_key_path = state_dir / "ca-key.pem"
    if not (files.ca_bundle.exists() and ca_key_path.exists()):
        ca_key = _new_key()
        write_private(ca_key_path, _key_pem(ca_key))
        write_atomic(files.ca_bundle, _ca_cert(ca_key).public_bytes(serialization.Encoding.PEM))
    if not _server_cert_fresh(files.cert) or not files.key.exists():
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{ca_key_path} is not an RSA key")
        ca_key = loaded
        ca_cert = x509.load_pem_x509_certificate(files.ca_bundle.read_bytes())
        server_key = _new_key()
        write_private(files.key, _key_pem(server_key))
        write_atomic(
            files.cert, _server_cert(server_key, ca_key, ca_cert).public_bytes(serialization.Encoding.PEM)
        )
    return files


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca_cert(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SAM sandbox local CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_cert(
    key: rsa.RSAPrivateKey, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate
) -> x509.Certificate:
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _server_cert_fresh(path: Path) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc - _now() > dt.timedelta(days=30)
