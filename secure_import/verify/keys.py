"""Ed25519 key formats, key ids and key generation.

Only Ed25519 is supported: one algorithm means no algorithm negotiation, no
weak-parameter choices and fixed-size keys and signatures.

- A key id is the lowercase hex SHA-256 of the 32-byte raw public key, so it is
  derived from key material.  A key id written in a signature is therefore only
  a lookup hint; trust comes from verifying against a pinned key.
- Public keys travel as SubjectPublicKeyInfo PEM; private keys as PKCS#8 PEM,
  optionally encrypted with a passphrase.
- Private key files are created with mode 0600 from the first byte (never
  world-readable, even briefly) and are never silently overwritten.
- Every parsing or file failure is reported as a
  :class:`~secure_import.errors.KeyFileError` naming the file, never as a raw
  ``ValueError`` from the crypto library.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from secure_import.errors import FormatError, KeyFileError

__all__ = [
    "KEY_NAME_PATTERN",
    "PUBLIC_KEY_LENGTH",
    "SIGNATURE_LENGTH",
    "PublicKey",
    "load_public_key",
    "public_key_of",
]

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Allowed key names for :func:`generate_keypair` (matched in full)."""


@dataclass(frozen=True)
class PublicKey:
    """A pinned Ed25519 public key, held as its 32 raw bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PUBLIC_KEY_LENGTH:
            size = len(self.raw) if isinstance(self.raw, bytes) else type(self.raw).__name__
            raise FormatError(
                "an Ed25519 public key must be exactly 32 raw bytes",
                check="public-key",
                expected=PUBLIC_KEY_LENGTH,
                got=size,
            )

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        """Build a key from 32 raw bytes.

        Raises:
            FormatError: if ``raw`` is not exactly 32 bytes.
        """
        return cls(raw)

    @property
    def key_id(self) -> str:
        """Lowercase hex SHA-256 of the raw key: derived, never claimed."""
        return hashlib.sha256(self.raw).hexdigest()

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Return True if ``signature`` is this key's signature over ``data``.

        Never raises: a malformed signature is simply not valid.
        """
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def to_pem(self) -> bytes:
        """The key as SubjectPublicKeyInfo PEM."""
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id[:16]}...)"


def public_key_of(private_key: Ed25519PrivateKey) -> PublicKey:
    """The public half of ``private_key``."""
    return PublicKey(private_key.public_key().public_bytes_raw())


def load_public_key(data: bytes, *, source: str) -> PublicKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 public key.

    ``source`` (a file name, a config key) is named in error messages.

    Raises:
        KeyFileError: if ``data`` is not PEM, not a public key, or not Ed25519.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{source}: not a PEM SubjectPublicKeyInfo public key", check="public-key"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(
            f"{source}: public key is not Ed25519",
            check="key-type",
            expected="ed25519",
            got=type(key).__name__,
        )
    return PublicKey(key.public_bytes_raw())
