"""The development CA of ``secure-import serve``, kept in a private directory.

A ``ca_bundle`` saved in code or configuration must keep working when the
development server restarts, so the CA is not thrown away: its certificate
(``ca.pem``) and private key (``ca-key.pem``) live in one directory
(``--ca-dir``; default under the user's data directory).  Each start mints a
new short-lived server certificate from it (:func:`.devtls.issue_certificate`).

Invariants:

- the directory is a real directory owned by the current user, created 0700
  and never group/other writable, with no parent another user could rename
  (:func:`~secure_import.store.fsutil.secure_dir`); both files are written
  atomically with mode 0600 and read without following a symlink;
- a key file that is not a regular file of ours, or that group or others may
  read, is refused (a ``ConfigError`` naming the mode), never used or
  silently replaced: someone may have copied it;
- the CA is name-constrained to the loopback hosts it serves, so even a
  leaked key (or a CA added to a trust store) certifies nothing else;
- a CA that does not load, whose key does not match its certificate, or that
  expires within :data:`RENEW_BEFORE` is replaced by a new one, and the
  caller is told (a saved ``ca_bundle`` must then be refreshed);
- two servers starting at once agree on one CA (an exclusive lock around
  load-or-create).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from secure_import.errors import ConfigError, SecureImportError
from secure_import.publish.devtls import DEFAULT_HOSTS, DevCA, make_dev_ca
from secure_import.store.fsutil import atomic_write, exclusive_lock, read_file, secure_dir

__all__ = ["CA_CERT_NAME", "CA_KEY_NAME", "CA_VALIDITY", "KeptCA", "load_or_create_ca"]

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
#: Lifetime of a kept CA (server certificates are minted per start, for two days).
CA_VALIDITY = timedelta(days=365)
#: A kept CA this close to expiry is replaced.
RENEW_BEFORE = timedelta(days=7)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class KeptCA:
    """The CA to serve with, where its certificate is, and what happened:
    ``"reused"``, ``"created"`` or ``"renewed"`` (``reason`` says why)."""

    ca: DevCA
    cert_path: Path
    action: str
    reason: str | None = None


def load_or_create_ca(directory: Path, *, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> KeptCA:
    """The CA kept in ``directory``, created (or replaced) when needed.

    Raises:
        ConfigError: the directory is unsafe (another owner, writable by
            others, a symlink), or the key file is not private.
    """
    try:
        secure_dir(directory, what="serve CA")
    except SecureImportError as exc:
        raise ConfigError(
            f"cannot use {directory} for the development CA: {exc}", check="serve-ca-dir"
        ) from exc
    cert_path = directory / CA_CERT_NAME
    key_path = directory / CA_KEY_NAME
    try:
        with exclusive_lock(directory / ".lock"):
            problem = _key_file_problem(key_path)
            if problem is not None:
                raise ConfigError(
                    f"the development CA key {key_path} {problem}; refusing to use it "
                    "(delete the directory to start a new CA)",
                    check="serve-ca-key",
                    got=str(key_path),
                )
            found, reason = _load(cert_path, key_path)
            if found is not None:
                return KeptCA(found, cert_path, "reused")
            ca = make_dev_ca(valid_for=CA_VALIDITY, constrain_to=hosts)
            # The key first: a certificate is never on disk without its key.
            atomic_write(key_path, ca.key_pem, durable=True)
            atomic_write(cert_path, ca.cert_pem, durable=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the development CA in {directory}: {exc}", check="serve-ca-dir"
        ) from exc
    return KeptCA(ca, cert_path, "created" if reason is None else "renewed", reason)


def _key_file_problem(path: Path) -> str | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a symlink?)"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"is readable or writable by others ({stat.filemode(info.st_mode)})"
    return None


def _load(cert_path: Path, key_path: Path) -> tuple[DevCA | None, str | None]:
    """The kept CA, or ``(None, why it cannot be used)``; ``(None, None)``
    when there is none yet."""
    cert_pem = read_file(cert_path)
    key_pem = read_file(key_path)
    if cert_pem is None and key_pem is None:
        return None, None
    if cert_pem is None or key_pem is None:
        return None, "only one of ca.pem and ca-key.pem was there"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        return None, f"the kept CA does not load ({exc})"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or (
        key.public_key().public_numbers() != _public_numbers(cert)
    ):
        return None, "the kept CA key does not match its certificate"
    left = cert.not_valid_after_utc - datetime.now(UTC)
    if left < RENEW_BEFORE:
        return None, f"the kept CA expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    return DevCA(cert, key), None


def _public_numbers(cert: x509.Certificate) -> object:
    public = cert.public_key()
    return public.public_numbers() if isinstance(public, ec.EllipticCurvePublicKey) else None
