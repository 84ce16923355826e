"""The one exception tree of secure_import.

Every failure secure_import reports is a :class:`SecureImportError`, which is an
:class:`ImportError`: a failure for a module name we own surfaces from ``import``
as an ``ImportError`` subclass, never as a raw ``KeyError``/``ValueError`` and
never as a silent fall-through to another source.  Each class carries a stable
kebab-case ``code`` that also lands in the audit log, so operators can match on
it across versions.

Two roots, because the remedies differ: a *trust* failure means somebody may be
attacking you (do not retry, investigate); a *transport* failure means the
network or server misbehaved (retrying later may help).  Local-state and usage
errors are separate again::

    SecureImportError (ImportError)                       code
    ├── TrustError                                        trust-error
    │   ├── FormatError                                   format-error
    │   ├── SignatureError                                bad-signature
    │   │   ├── ThresholdError                            threshold-not-met
    │   │   ├── IdentityMismatchError                     identity-mismatch
    │   │   └── SigstoreBundleError                       bad-sigstore-bundle
    │   ├── HashMismatchError                             hash-mismatch
    │   ├── LengthMismatchError                           length-mismatch
    │   ├── ExpiredError                                  expired
    │   ├── RollbackError                                 rollback
    │   ├── EquivocationError                             equivocation
    │   ├── FastForwardError                              fast-forward
    │   ├── RootRotationError                             root-rotation
    │   ├── LockMismatchError                             lock-mismatch
    │   ├── UnsafePathError                               unsafe-path
    │   └── DependencyError                               dependency-refused
    │       ├── UndeclaredImportError                     undeclared-import
    │       ├── DependencyConflictError                   dependency-conflict
    │       ├── PublisherMismatchError                    dependency-publisher
    │       └── VersionRangeError                         dependency-range
    ├── TransportError                                    transport-error
    │   ├── RedirectRefusedError                          redirect-refused
    │   ├── TLSError                                      tls-error
    │   ├── DeadlineError                                 deadline-exceeded
    │   ├── HTTPStatusError                               http-status
    │   ├── TooLargeError                                 too-large
    │   ├── EncodingRefusedError                          encoding-refused
    │   ├── ConnectionFailedError                         connection-failed
    │   ├── AllSourcesFailedError                         all-sources-failed
    │   └── OfflineError                                  offline
    ├── LocalStateError                                   local-state
    │   ├── UnsafePermissionsError                        unsafe-permissions
    │   ├── CacheCorruptError                             cache-corrupt
    │   ├── AuditWriteError                               audit-write-failed
    │   └── MaterialiseError                              materialise-failed
    ├── ConfigError                                       config-error
    │   ├── KeyFileError                                  key-file
    │   ├── InsecureURLError                              insecure-url
    │   └── ChildConfigError                              child-config-refused
    ├── PublishConflictError                              publish-conflict
    ├── RequestBuildError                                 request-invalid
    └── NotListedError (also ModuleNotFoundError)         not-listed

Every message names the check that failed and, where it applies, the URL, the
expected value and the value actually got: ``str(err)`` is enough for a person
to understand what happened without a debugger.
"""

from __future__ import annotations

#: ``typing`` is not imported at run time (a few ms of every start-up):
#: annotations are strings here, read only by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "AllSourcesFailedError",
    "AuditWriteError",
    "CacheCorruptError",
    "ChildConfigError",
    "ConfigError",
    "ConnectionFailedError",
    "DeadlineError",
    "DependencyConflictError",
    "DependencyError",
    "EncodingRefusedError",
    "EquivocationError",
    "ExpiredError",
    "FastForwardError",
    "FormatError",
    "HTTPStatusError",
    "HashMismatchError",
    "IdentityMismatchError",
    "InsecureURLError",
    "KeyFileError",
    "LengthMismatchError",
    "LocalStateError",
    "LockMismatchError",
    "MaterialiseError",
    "NotListedError",
    "OfflineError",
    "PublishConflictError",
    "PublisherMismatchError",
    "RedirectRefusedError",
    "RequestBuildError",
    "RollbackError",
    "RootRotationError",
    "SecureImportError",
    "SignatureError",
    "SigstoreBundleError",
    "TLSError",
    "ThresholdError",
    "TooLargeError",
    "TransportError",
    "TrustError",
    "UndeclaredImportError",
    "UnsafePathError",
    "UnsafePermissionsError",
    "VersionRangeError",
]


_MAX_FIELD = 500


def _clean(text: str) -> str:
    """Escape control characters and bound the length.

    URLs, names and values in messages may come from an attacker (a redirect
    target, a path in a manifest): they must not inject newlines into logs or
    escape sequences into a terminal.
    """
    if len(text) > _MAX_FIELD:
        text = text[:_MAX_FIELD] + "...(truncated)"
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class SecureImportError(ImportError):
    """Base of every error secure_import raises.

    ``check`` names the verification step, ``url`` the resource concerned,
    ``expected``/``got`` the two sides of a failed comparison.  They are kept as
    attributes (not only in the message) so the audit log and ``--json`` output
    can record them without parsing text.
    """

    code: ClassVar[str] = "secure-import-error"

    def __init__(
        self,
        message: str,
        *,
        check: str | None = None,
        url: str | None = None,
        expected: object = None,
        got: object = None,
        name: str | None = None,
        path: str | None = None,
    ) -> None:
        self.detail = _clean(message)
        self.check = check
        self.url = None if url is None else _clean(url)
        self.expected = expected
        self.got = got
        parts = [f"[{self.code}] {self.detail}"]
        if check is not None:
            parts.append(f"check: {check}")
        if self.url is not None:
            parts.append(f"url: {self.url}")
        if expected is not None:
            parts.append(f"expected: {_clean(str(expected))}")
        if got is not None:
            parts.append(f"got: {_clean(str(got))}")
        super().__init__("; ".join(parts), name=name, path=path)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready description for the audit log and ``--json`` output."""
        out: dict[str, object] = {"code": self.code, "message": self.detail}
        for field in ("check", "url", "expected", "got"):
            value = getattr(self, field)
            if value is not None:
                out[field] = _clean(str(value))
        return out


# --- trust ---------------------------------------------------------------


class TrustError(SecureImportError):
    """Data did not pass verification: treat it as a possible attack."""

    code = "trust-error"


class FormatError(TrustError):
    """A manifest, envelope, key or root document is not well formed."""

    code = "format-error"


class SignatureError(TrustError):
    """A signature is invalid or made by a key that is not pinned."""

    code = "bad-signature"


class ThresholdError(SignatureError):
    """Fewer distinct pinned keys signed than the threshold requires.

    ``check`` says why: ``signature-invalid`` (a signature claiming a pinned
    key did not verify: tampering), ``no-pinned-signer`` (no signature even
    claims a pinned key: a wrong key pinned, or a rotation) or ``threshold``
    (too few pinned keys signed).  The key ids are kept as attributes too.
    """

    code = "threshold-not-met"
    signer_ids: tuple[str, ...] = ()
    pinned_ids: tuple[str, ...] = ()
    verified_ids: tuple[str, ...] = ()
    failed_pinned_ids: tuple[str, ...] = ()


class IdentityMismatchError(SignatureError):
    """A valid Sigstore signature, made by an identity that is not pinned.

    The message names the identity that signed (issuer, repository, workflow,
    ref) and each pinned identity with the claims that differ.
    """

    code = "identity-mismatch"


class SigstoreBundleError(SignatureError):
    """A Sigstore bundle is malformed or fails verification against the pinned trusted root."""

    code = "bad-sigstore-bundle"


class HashMismatchError(TrustError):
    """A file's sha256 differs from the one the signed manifest lists."""

    code = "hash-mismatch"


class LengthMismatchError(TrustError):
    """A file is longer or shorter than the signed manifest says."""

    code = "length-mismatch"


class ExpiredError(TrustError):
    """Signed metadata is past its expiry time (a freeze attack, or a stale publisher)."""

    code = "expired"


class RollbackError(TrustError):
    """Signed metadata is older than the highest version already accepted."""

    code = "rollback"


class EquivocationError(TrustError):
    """Same version number as already accepted, but different signed content."""

    code = "equivocation"


class FastForwardError(TrustError):
    """A version number beyond the sane bound (e.g. a stolen key signing 2**62)."""

    code = "fast-forward"


class RootRotationError(TrustError):
    """A new trust root is not properly signed by both the old and new keys."""

    code = "root-rotation"


class LockMismatchError(TrustError):
    """In frozen mode, the repository's manifest is not the one in the lock file."""

    code = "lock-mismatch"


class UnsafePathError(TrustError):
    """A path in a manifest or source tree could escape or confuse the layout."""

    code = "unsafe-path"


class DependencyError(TrustError):
    """A dependency edge between two repositories was refused: the signed
    declaration of the importing repository and what the consumer gets for
    that name do not agree (or there is no declaration)."""

    code = "dependency-refused"


class UndeclaredImportError(DependencyError):
    """Code from one repository imported a name served by another repository
    without a signed declaration for it."""

    code = "undeclared-import"


class DependencyConflictError(DependencyError):
    """A name would map to two repositories (a declaration names another
    repository than the one serving the name, or two repositories claim it)."""

    code = "dependency-conflict"


class PublisherMismatchError(DependencyError):
    """The declared publisher of a dependency is not the one the consumer
    pinned, or not the one that signed the dependency's manifest."""

    code = "dependency-publisher"


class VersionRangeError(DependencyError):
    """The dependency's signed version is outside the declared range (or is
    not the declared manifest)."""

    code = "dependency-range"


# --- transport -----------------------------------------------------------


class TransportError(SecureImportError):
    """The network or server failed; nothing received was trusted."""

    code = "transport-error"


class RedirectRefusedError(TransportError):
    """The server redirected off the configured https origin."""

    code = "redirect-refused"


class TLSError(TransportError):
    """The TLS handshake failed (bad, expired or wrong-host certificate)."""

    code = "tls-error"


class DeadlineError(TransportError):
    """A download did not finish within its total deadline."""

    code = "deadline-exceeded"


class HTTPStatusError(TransportError):
    """The server answered with an unexpected HTTP status."""

    code = "http-status"


class TooLargeError(TransportError):
    """A body exceeded its cap (signed length, or the manifest cap)."""

    code = "too-large"


class EncodingRefusedError(TransportError):
    """The server applied a content encoding (compression) we never decode."""

    code = "encoding-refused"


class ConnectionFailedError(TransportError):
    """The connection could not be made or broke before the body was complete."""

    code = "connection-failed"


class AllSourcesFailedError(TransportError):
    """A repository with mirrors: no source (the origin, then each mirror in
    order) served the resource.  ``attempts`` lists ``(url, what happened)``
    for each source tried, in order; the message lists them too (each in a
    short form: code, check and status, so the list is never cut off)."""

    code = "all-sources-failed"

    def __init__(
        self,
        message: str,
        *,
        attempts: tuple[tuple[str, str], ...],
        check: str | None = None,
        url: str | None = None,
    ) -> None:
        self.attempts = attempts
        listed = "; ".join(f"{n}. {at}: {what}" for n, (at, what) in enumerate(attempts, 1))
        super().__init__(message, check=check, url=url, got=listed)

    def as_dict(self) -> dict[str, object]:
        out = super().as_dict()
        out["attempts"] = [{"url": _clean(at), "error": _clean(what)} for at, what in self.attempts]
        return out


class OfflineError(TransportError):
    """A file or manifest is needed that is not in the cache, and the
    repository is offline: no connection was attempted (unlike
    :class:`ConnectionFailedError`).  The remedy is to prefetch while online
    (``secure-import cache warm``), not to look at the network."""

    code = "offline"


# --- local state ---------------------------------------------------------


class LocalStateError(SecureImportError):
    """The local cache, state or log cannot be used safely."""

    code = "local-state"


class UnsafePermissionsError(LocalStateError):
    """A directory or file is writable by others, owned by another user, or a symlink."""

    code = "unsafe-permissions"


class CacheCorruptError(LocalStateError):
    """A cached file or cached manifest envelope no longer verifies.

    The corrupt copy is always discarded and fetched again (audited as
    ``cache-corrupt``); this error is raised only when nothing can replace
    it: the repository is offline, or frozen to the envelope that was lost."""

    code = "cache-corrupt"


class AuditWriteError(LocalStateError):
    """The audit record could not be written, so the import must not proceed."""

    code = "audit-write-failed"


class MaterialiseError(LocalStateError):
    """A package could not be materialised on disk (or did not verify right
    after writing it): the import fails rather than run with a broken
    ``__file__``."""

    code = "materialise-failed"


# --- configuration -------------------------------------------------------


class ConfigError(SecureImportError):
    """The user's configuration or arguments are invalid."""

    code = "config-error"


class KeyFileError(ConfigError):
    """A key file is missing, unreadable, of the wrong type, or badly protected."""

    code = "key-file"


class InsecureURLError(ConfigError):
    """A URL is not https, or is not of a shape we accept (userinfo, odd host).

    A configuration refusal, raised before any request: the URL the user (or a
    configuration file) gave is unusable.  A redirect to such a URL is a
    :class:`RedirectRefusedError` instead (the server's doing)."""

    code = "insecure-url"


# --- publishing ----------------------------------------------------------


class PublishConflictError(SecureImportError):
    """A publish was refused because the store's state is not the one it built on:
    another publisher holds the lock or committed first, or the store holds a
    manifest that is newer or does not verify.  Nothing this publish uploaded
    is referenced by the store's manifest."""

    code = "publish-conflict"


class RequestBuildError(SecureImportError):
    """A request could not even be built from local inputs (a header value, a
    URL): a local fault, not the server's, so it is never a reason to fall
    back to a cached copy as if the server were unreachable (THREATS H5)."""

    code = "request-invalid"


class ChildConfigError(ConfigError):
    """A child interpreter was handed a description of its parent's
    configuration that is not one a trusted layer wrote (not a description
    id, not in our state directory, not ours, or failing its seal)."""

    code = "child-config-refused"


# --- names ---------------------------------------------------------------


class NotListedError(SecureImportError, ModuleNotFoundError):
    """A name under an owned top-level name that the signed manifest does not list.

    Also a ``ModuleNotFoundError`` so ``try: import x except ModuleNotFoundError``
    idioms (optional dependencies) keep working for remote packages.
    """

    code = "not-listed"
