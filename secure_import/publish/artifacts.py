"""``secure-import verify``: the artifacts a client may fetch besides the files.

:mod:`secure_import.publish.sitecheck` checks the signed manifest and every
file it lists; a client also fetches the package bundles, the manifest
pointer and (when identities are pinned) the Sigstore bundle.  A site whose
loose files are fine but whose bundle is corrupt fails every cold import; a
stale pointer freezes every client that holds the envelope it names.  Each
function here checks one kind of artifact exactly as a client would use it
and appends one clear failure per problem (or a note) to the report:

- :func:`check_bundles`: every bundle a client may request for the manifest,
  opened with :mod:`secure_import.verify.bundle`'s own functions (the signed
  lengths split it, each piece is hashed), so this check follows the bundle
  format wherever the consumer's code goes; a bundle missing is only a note
  (the client then fetches file by file);
- :func:`check_pointer`: the pointer must name exactly the manifest envelope
  published (sha256, length and version), or be absent;
- :func:`check_sigstore_bundle`: a Sigstore bundle, when published, must
  verify over the envelope's payload (against the pinned identities when
  there are any), and the payload file published for ``sigstore verify``
  must be the envelope's payload.

Nothing is trusted from an artifact: it is only compared with what the
verified manifest says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from secure_import.config import MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME
from secure_import.errors import (
    ConfigError,
    FormatError,
    HashMismatchError,
    HTTPStatusError,
    IdentityMismatchError,
    LengthMismatchError,
    SecureImportError,
    TooLargeError,
)
from secure_import.verify.bundle import (
    BundleEntry,
    bundle_entries,
    bundle_path,
    open_bundle,
    split_pieces,
)
from secure_import.verify.envelope import MANIFEST_PAYLOAD_TYPE, authenticate
from secure_import.verify.keyless import MAX_BUNDLE_BYTES, PinnedTrustedRoot
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.pointer import POINTER_MAX_BYTES, POINTER_NAME, parse_pointer
from secure_import.verify.root import Root

__all__ = [
    "Findings",
    "Reader",
    "check_bundles",
    "check_pointer",
    "check_sigstore_bundle",
]

#: Reads a repository-relative path (at most ``cap + 1`` bytes): its bytes and
#: the URL or path actually read.  A missing file is an HTTPStatusError with
#: ``got`` 404 (https) or ``None`` (a local directory).
Reader = Callable[[str, int], tuple[bytes, str]]


@dataclass
class Findings:
    """What the checks found: failures (the site is broken for some client)
    and notes (worth knowing, nothing broken)."""

    failures: list[SecureImportError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bundles_checked: int = 0


def _missing(exc: HTTPStatusError) -> bool:
    return exc.got in (None, 404, 410)


def _read_optional(read: Reader, rel: str, cap: int, found: Findings) -> tuple[bytes, str] | bool:
    """``read(rel, cap)``; ``False`` when the file is absent, ``True`` when
    it could not be read (the failure is recorded)."""
    try:
        return read(rel, cap)
    except HTTPStatusError as exc:
        if _missing(exc):
            return False
        found.failures.append(exc)
        return True
    except SecureImportError as exc:
        found.failures.append(exc)
        return True


# --- bundles ----------------------------------------------------------------------


def check_bundles(read: Reader, manifest: Manifest, found: Findings) -> None:
    """Each bundle a client may request, checked as the client checks it:
    a signed bundle (spec version 3) by its compressed length and sha256,
    then decompressed with the cap and every member hashed
    (:func:`~secure_import.verify.bundle.open_bundle`); the unsigned bundle of
    an older manifest by exactly the signed length, every piece its member's
    sha256 (:func:`~secure_import.verify.bundle.split_pieces`)."""
    absent: list[str] = []
    targets: list[tuple[str, str, int, Callable[[bytes, str], object]]] = []
    for bundle in manifest.bundles or ():

        def open_signed(data: bytes, url: str, bundle: BundleEntry = bundle) -> object:
            return open_bundle(data, bundle, manifest.files, url=url)

        targets.append((bundle.path, bundle.path, bundle.length, open_signed))
    for top in sorted(manifest.provides) if manifest.bundles is None else ():
        entries = bundle_entries(manifest.files, top)
        if not entries:
            continue
        total = sum(e.length for e in entries)

        def open_legacy(
            data: bytes, url: str, entries: list[FileEntry] = entries, total: int = total
        ) -> object:
            if len(data) != total:
                raise LengthMismatchError(
                    "the bundle is shorter than its signed files",
                    check="bundle-length",
                    url=url,
                    expected=f"{total} bytes",
                    got=f"{len(data)} bytes",
                )
            return split_pieces(data, entries, url=url)

        targets.append((top, bundle_path(entries, top), total, open_legacy))
    for label, rel, cap, opener in targets:
        try:
            data, url = read(rel, cap)
        except HTTPStatusError as exc:
            if _missing(exc):
                absent.append(label)
            else:
                found.failures.append(exc)
            continue
        except TooLargeError as exc:
            found.failures.append(
                LengthMismatchError(
                    f"the bundle {label} is longer than its signed length",
                    check="bundle-length",
                    url=exc.url or rel,
                    expected=f"{cap} bytes",
                    got=f"more than {cap} bytes",
                )
            )
            continue
        except SecureImportError as exc:
            found.failures.append(exc)
            continue
        found.bundles_checked += 1
        try:
            opener(data, url)
        except SecureImportError as exc:
            found.failures.append(exc)
    if absent:
        found.notes.append(
            f"no bundle for {', '.join(absent)}: clients fetch those modules file by file"
        )


# --- the manifest pointer -----------------------------------------------------------


def check_pointer(read: Reader, envelope: bytes, manifest: Manifest, found: Findings) -> None:
    """The pointer, when published, names exactly this envelope and version.

    A stale pointer (one naming an older envelope) tells every client that
    holds that envelope that it is still current: they stay on the old
    release until it expires.  A malformed one makes every client fetch the
    whole manifest on every run.
    """
    got = _read_optional(read, POINTER_NAME, POINTER_MAX_BYTES, found)
    if got is False:
        found.notes.append(f"no {POINTER_NAME}: clients fetch the whole manifest on every run")
    if isinstance(got, bool):
        return
    data, url = got
    try:
        pointer = parse_pointer(data, url=url)
    except FormatError as exc:
        found.failures.append(exc)
        return
    digest = hashlib.sha256(envelope).hexdigest()
    if not pointer.names(envelope):
        found.failures.append(
            HashMismatchError(
                "the manifest pointer names another manifest envelope (stale: not "
                "rewritten with the manifest); clients holding that envelope keep it "
                "as current",
                check="pointer",
                url=url,
                expected=f"sha256 {digest}, {len(envelope)} bytes, version {manifest.version}",
                got=f"sha256 {pointer.sha256}, {pointer.length} bytes, version {pointer.version}",
            )
        )
    elif pointer.version != manifest.version:
        found.failures.append(
            FormatError(
                "the manifest pointer names this envelope with another version",
                check="pointer-version",
                url=url,
                expected=manifest.version,
                got=pointer.version,
            )
        )


# --- the Sigstore bundle --------------------------------------------------------------


def check_sigstore_bundle(
    read: Reader,
    envelope: bytes,
    found: Findings,
    *,
    root: Root,
    trusted_root: Callable[[], PinnedTrustedRoot],
    counted: bool,
) -> None:
    """The Sigstore bundle, when published, verifies over the envelope's
    payload; with identities pinned, its signer is one of them.

    ``counted``: the signature check already verified it and matched its
    signer (it counted toward the threshold): only the payload file is left.
    ``trusted_root``: the Sigstore trusted root to verify against when no
    identity is pinned (the one given on the command line, else the
    public-good root).
    """
    from secure_import.verify import identity, keyless

    got = _read_optional(read, SIGSTORE_BUNDLE_NAME, MAX_BUNDLE_BYTES, found)
    if got is False and root.identities:
        found.notes.append(f"no {SIGSTORE_BUNDLE_NAME}: no pinned identity signed")
    if isinstance(got, bool):
        return
    bundle, url = got
    payload = authenticate(envelope, payload_type=MANIFEST_PAYLOAD_TYPE, keys=()).payload
    _check_payload_file(read, payload, found)
    if counted:
        return
    try:
        keyless.require_sigstore()
    except ConfigError:
        found.notes.append(
            f"{SIGSTORE_BUNDLE_NAME} not verified: sigstore-python is not installed "
            "(pip install 'secure-import[sigstore]')"
        )
        return
    try:
        pinned = root.sigstore_root if root.sigstore_root is not None else trusted_root()
        signer = keyless.verify_bundle(payload, bundle, trusted_root=pinned, url=url).signer
    except SecureImportError as exc:
        found.failures.append(exc)
        return
    if root.identities and not identity.matching(root.identities, signer):
        found.failures.append(
            IdentityMismatchError(
                "the Sigstore bundle was signed by an identity that is not pinned",
                check="identity",
                url=url,
                expected="; ".join(pin.describe() for pin in root.identities),
                got=signer.describe(),
            )
        )
        return
    found.notes.append(
        f"{SIGSTORE_BUNDLE_NAME} verified: signed by {signer.describe()}"
        + ("" if root.identities else " (no identity pinned: pin one to require it)")
    )


def _check_payload_file(read: Reader, payload: bytes, found: Findings) -> None:
    """The payload file third parties verify with ``sigstore verify`` must be
    exactly what the envelope carries (what consumers verify)."""
    try:
        data, url = read(MANIFEST_PAYLOAD_NAME, len(payload) + 1)
    except SecureImportError as exc:
        found.failures.append(exc)
        return
    if data != payload:
        found.failures.append(
            FormatError(
                "the published payload file differs from the manifest envelope's payload",
                check="payload-file",
                url=url,
                expected=f"sha256 {hashlib.sha256(payload).hexdigest()}",
                got=f"sha256 {hashlib.sha256(data).hexdigest()}",
            )
        )
