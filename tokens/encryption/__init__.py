"""Encryption at rest: Tink AEAD (AES-256-GCM) model fields, keyset loading and key rotation.

See docs/encryption.md. Public modules: `errors`, `keyset`, `ciphertext`, `fields`, `rotation`, `admin`.
"""
