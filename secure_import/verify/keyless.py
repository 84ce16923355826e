"""Verifying a Sigstore bundle offline against a pinned trusted root (sigstore-python).

This is the one module that imports :mod:`sigstore`, and only inside its
functions: ``import secure_import`` never loads it, and a repository that pins
only Ed25519 keys never reaches it.  The ``sigstore`` package comes with the
optional extra ``secure-import[sigstore]``; without it, using an identity is a
:class:`~secure_import.errors.ConfigError` that says what to install.

Invariants of :func:`verify_bundle`:

- the trusted root is the one the caller passes (bytes the user pinned, or the
  copy shipped inside the installed ``sigstore`` wheel, read by
  :mod:`secure_import.store.trustedroot`); nothing is read from
  sigstore's user cache or refreshed over the network: the verifier is built
  from that root alone (``Verifier(trusted_root=...)``), never with
  ``Verifier.production(offline=True)``, which trusts whatever the user cache
  holds;
- sigstore-python's verifier performs every cryptographic check: the
  certificate chains to the root's CA at a time the transparency log (or a
  timestamp authority of the root) vouches for, the certificate embeds a valid
  SCT from a CT log of the root, the log entry's inclusion proof and signed
  checkpoint (and inclusion promise, when present) verify under a log key of
  the root, the log time lies inside the certificate's validity, the signature
  covers exactly ``artifact``, and the log entry agrees with the bundle;
- the identity decision is not left to sigstore-python's policy objects: the
  policy handed to the verifier accepts any certificate, and the caller
  matches the returned :class:`~secure_import.verify.identity.SignerIdentity`
  against its pins with :func:`~secure_import.verify.identity.mismatches`,
  after every cryptographic check has passed;
- the bundle is capped in size before it is parsed, and every failure of
  sigstore-python (its errors, pydantic's, a malformed certificate) becomes a
  :class:`~secure_import.errors.SigstoreBundleError`; nothing raw escapes;
- no file, clock or network access happens here (sigstore-python's verifier
  makes none on this path: the log entry comes from the bundle).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secure_import.errors import ConfigError, SigstoreBundleError
from secure_import.verify import strictjson
from secure_import.verify.identity import SignerIdentity, signer_from_certificate

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.x509 import Certificate

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_TRUSTED_ROOT_BYTES",
    "PinnedTrustedRoot",
    "VerifiedBundle",
    "load_trusted_root",
    "require_sigstore",
    "verify_bundle",
]

#: A Sigstore bundle is a few kilobytes (one certificate, one log entry).
MAX_BUNDLE_BYTES = 256 * 1024
#: The public-good trusted root is ~10 KiB; leave room for private deployments.
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024

_INSTALL_HINT = "install the extra: pip install 'secure-import[sigstore]'"


def require_sigstore() -> None:
    """Import sigstore-python's verifier, or say which extra is missing.

    Raises:
        ConfigError: ``sigstore`` is not installed (or does not import).
    """
    try:
        import sigstore.verify  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "pinning a Sigstore identity needs sigstore-python, which is not installed",
            check="sigstore-extra",
            expected=_INSTALL_HINT,
            got=f"{type(exc).__name__}: {exc}",
        ) from exc


@dataclass(frozen=True)
class PinnedTrustedRoot:
    """A parsed Sigstore trusted root and where it came from.

    ``sha256`` is the digest of the exact bytes the user pinned (shown by
    ``secure-import check``, and part of what the manifest memo is bound to);
    two pins are equal when their bytes are.
    """

    source: str = field(compare=False)
    sha256: str
    #: sigstore.models.TrustedRoot, kept opaque so this module's import stays light.
    _root: Any = field(compare=False, repr=False)


def load_trusted_root(data: bytes, *, source: str) -> PinnedTrustedRoot:
    """Parse a ``trusted_root.json`` the user pinned.

    Raises:
        ConfigError: sigstore is missing, or the document is too large, not a
            Sigstore trusted root, or lacks a CA or a transparency log.
    """
    require_sigstore()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise ConfigError(
            f"{source}: the Sigstore trusted root is too large",
            check="trusted-root",
            expected=f"at most {MAX_TRUSTED_ROOT_BYTES} bytes",
            got=len(data),
        )
    try:
        inner = trustroot_v1.TrustedRoot.from_json(data)
        root = TrustedRoot(inner)
        root.get_fulcio_certs()
        if not inner.tlogs:
            raise ValueError("it lists no transparency log")
    except (SigstoreError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{source}: not a usable Sigstore trusted root",
            check="trusted-root",
            got=f"{type(exc).__name__}: {str(exc)[:200]}",
        ) from exc
    return PinnedTrustedRoot(source=source, sha256=hashlib.sha256(data).hexdigest(), _root=root)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every cryptographic check, and who signed it."""

    signer: SignerIdentity
    log_index: int
    integrated_time: int | None


class _IdentityDecidedByCaller:
    """A sigstore verification policy that accepts every certificate.

    The caller compares the certificate's claims with its pins after the
    verifier returns (see the module docstring); sigstore-python requires a
    policy object, and its no-op policy logs a warning on every use.
    """

    def verify(self, cert: Certificate) -> None:
        return None


def _bundle_error(message: str, url: str | None, exc: BaseException) -> SigstoreBundleError:
    return SigstoreBundleError(
        message, check="sigstore-bundle", url=url, got=f"{type(exc).__name__}: {str(exc)[:300]}"
    )


_IN_TOTO_TYPE = "application/vnd.in-toto+json"


def _statement_names(payload: bytes, digest: str, url: str | None) -> bool:
    """Whether an in-toto statement lists a subject whose sha256 is ``digest``."""
    document = strictjson.loads(payload, what="in-toto statement", url=url)
    subjects = document.get("subject") if isinstance(document, dict) else None
    if not isinstance(subjects, list):
        raise SigstoreBundleError(
            "the bundle's in-toto statement has no subject list", check="sigstore-bundle", url=url
        )
    for subject in subjects:
        if isinstance(subject, dict):
            digests = subject.get("digest")
            if isinstance(digests, dict) and digests.get("sha256") == digest:
                return True
    return False


def verify_bundle(
    artifact: bytes,
    bundle: bytes,
    *,
    trusted_root: PinnedTrustedRoot,
    url: str | None = None,
) -> VerifiedBundle:
    """Verify that ``bundle`` is a valid Sigstore signature over ``artifact``.

    Two bundle kinds are accepted, as ``sigstore verify`` accepts them: a
    message signature over ``artifact`` (what ``sigstore sign FILE`` makes),
    or a DSSE envelope carrying an in-toto statement with a subject whose
    sha256 is ``artifact``'s (what ``sigstore attest`` and PyPI attestations
    make).  Returns who signed; whether that identity is pinned is the
    caller's decision (:func:`~secure_import.verify.identity.matching`).

    Raises:
        ConfigError: sigstore is not installed.
        SigstoreBundleError: the bundle is malformed, too large, or fails any
            check (chain, SCT, log proof, time, signature, other bytes).
        FormatError: the certificate's identity claims are malformed.
    """
    require_sigstore()
    from pydantic import ValidationError
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    if len(bundle) > MAX_BUNDLE_BYTES:
        raise SigstoreBundleError(
            "the Sigstore bundle is too large",
            check="sigstore-bundle",
            url=url,
            expected=f"at most {MAX_BUNDLE_BYTES} bytes",
            got=len(bundle),
        )
    try:
        parsed = Bundle.from_json(bundle)
    except (SigstoreError, ValidationError, ValueError, TypeError) as exc:
        raise _bundle_error("the Sigstore bundle is malformed", url, exc) from exc
    policy = _IdentityDecidedByCaller()
    digest = hashlib.sha256(artifact).hexdigest()
    try:
        verifier = Verifier(trusted_root=trusted_root._root)
        if parsed._dsse_envelope is not None:
            payload_type, payload = verifier.verify_dsse(parsed, policy)
        else:
            verifier.verify_artifact(artifact, parsed, policy)
            payload_type, payload = None, b""
    except Exception as exc:
        raise _bundle_error(
            "the Sigstore bundle does not verify against the pinned trusted root", url, exc
        ) from exc
    if payload_type is not None:
        if payload_type != _IN_TOTO_TYPE:
            raise SigstoreBundleError(
                "the bundle's DSSE envelope does not carry an in-toto statement",
                check="sigstore-bundle",
                url=url,
                expected=_IN_TOTO_TYPE,
                got=payload_type[:100],
            )
        if not _statement_names(payload, digest, url):
            raise SigstoreBundleError(
                "the bundle's in-toto statement does not name these bytes",
                check="sigstore-subject",
                url=url,
                expected=f"a subject with sha256 {digest}",
                got="no such subject",
            )
    inner = parsed.log_entry._inner
    return VerifiedBundle(
        signer=signer_from_certificate(parsed.signing_certificate),
        log_index=int(inner.log_index),
        integrated_time=None if inner.integrated_time is None else int(inner.integrated_time),
    )
