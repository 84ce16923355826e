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
- ``cryptography`` is imported only to check a signature, make or print a
  key, or parse a key file that is not in the one canonical form
  (:func:`load_public_key`): a process that runs from its verified cache
  checks no signature (the sealed memo) and never pays for it.
"""

from __future__ import annotations

import binascii
import hashlib
import re

from secure_import._frozen import Frozen
from secure_import.errors import FormatError, KeyFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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

#: The DER SubjectPublicKeyInfo of an Ed25519 key is this header (SEQUENCE,
#: AlgorithmIdentifier with OID 1.3.101.112 and no parameters, BIT STRING of
#: 33 bytes with no unused bits) followed by the 32 raw key bytes (RFC 8410).
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_HEAD = b"-----BEGIN PUBLIC KEY-----\n"
_PEM_TAIL = b"\n-----END PUBLIC KEY-----\n"
#: Base64 of the 44-byte DER: one 60-character line.
_PEM_BODY_LENGTH = 60


class PublicKey(Frozen):
    """A pinned Ed25519 public key, held as its 32 raw bytes."""

    _fields = ("raw",)
    __slots__ = _fields

    raw: bytes

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_LENGTH:
            size = len(raw) if isinstance(raw, bytes) else type(raw).__name__
            raise FormatError(
                "an Ed25519 public key must be exactly 32 raw bytes",
                check="public-key",
                expected=PUBLIC_KEY_LENGTH,
                got=size,
            )
        object.__setattr__(self, "raw", raw)

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
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def to_pem(self) -> bytes:
        """The key as SubjectPublicKeyInfo PEM."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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

    The canonical form (what :func:`generate_keypair` and every common tool
    write: one base64 line of the 44-byte DER, ``\\n`` line ends) is decoded
    here, byte for byte; any other text (other line ends, another key type, a
    damaged file) goes to ``cryptography``'s parser, which accepts or refuses
    it with the reason.  Both yield the same key for the same bytes.

    Raises:
        KeyFileError: if ``data`` is not PEM, not a public key, or not Ed25519.
    """
    raw = _canonical_pem_key(data)
    if raw is not None:
        return PublicKey(raw)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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


def _canonical_pem_key(data: bytes) -> bytes | None:
    """The raw key of an Ed25519 public key in canonical PEM, else ``None``."""
    if (
        len(data) != len(_PEM_HEAD) + _PEM_BODY_LENGTH + len(_PEM_TAIL)
        or not data.startswith(_PEM_HEAD)
        or not data.endswith(_PEM_TAIL)
    ):
        return None
    body = data[len(_PEM_HEAD) : len(_PEM_HEAD) + _PEM_BODY_LENGTH]
    try:
        der = binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        return None
    if len(der) != len(_SPKI_PREFIX) + PUBLIC_KEY_LENGTH or not der.startswith(_SPKI_PREFIX):
        return None
    return der[len(_SPKI_PREFIX) :]
