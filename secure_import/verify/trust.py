"""Pure trust decisions about a manifest envelope: no I/O, no clock reads.

Invariants a reader can check against the code below:

- the envelope is verified against the pinned root's keys and threshold
  *before* its payload is parsed;
- with Sigstore identities pinned, keys and identities share one threshold:
  distinct keys count once each, and a Sigstore bundle counts once when it
  verifies over the exact payload under the pinned Sigstore trusted root *and*
  its certificate's claims match a pinned identity (a valid bundle by another
  identity is refused, naming both); the bundle is consulted only when the
  keys alone fall short;
- the manifest must claim the root version that verified it;
- the manifest is not expired at ``now`` (a time fixed by the caller at the
  start of the operation), allowing ``clock_slack``;
- its version never goes backwards from the high-water mark (rollback), the
  same version must carry the same signed bytes (equivocation), and it may not
  jump absurdly far ahead (fast-forward by a stolen key).

And for a new trust root (key rotation, revocation):

- root N+1 must be signed by a threshold of root N's keys *and* by a
  threshold of its own keys: neither the old keys alone (a thief of old keys
  cannot appoint new ones) nor the new keys alone (self-appointment) suffice;
- versions go up by exactly one: no step is skipped;
- only the newest root's expiry matters; intermediate roots may have expired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from secure_import._frozen import Frozen
from secure_import._guard import busy
from secure_import.errors import (
    ConfigError,
    EquivocationError,
    ExpiredError,
    FastForwardError,
    IdentityMismatchError,
    LockMismatchError,
    RollbackError,
    RootRotationError,
    SignatureError,
    ThresholdError,
)
from secure_import.verify import manifest
from secure_import.verify import root as rootmod
from secure_import.verify.manifest import Manifest
from secure_import.verify.root import Root

# Signature checks (envelope, and with it cryptography) and Sigstore bundles
# (identity, keyless) are imported by the functions that do them: a process
# whose manifest authentication comes from the sealed memo checks neither.

__all__ = [
    "SIGSTORE_SIGNER",
    "HighWater",
    "SigstoreBundle",
    "TrustedManifest",
    "authenticate_manifest",
    "check_manifest",
    "check_root_fresh",
    "load_verifier",
    "verify_manifest",
    "verify_root_update",
]


def load_verifier() -> None:
    """Import the signature code now (the DSSE envelope and cryptography's
    Ed25519): for a caller that knows a signature will be checked soon (a
    repository with no cached manifest) and would rather pay for the import
    outside an import statement.  A warm process, whose sealed memo stands in
    for the check, never calls it.  Under ``busy()``: whatever the signature
    library imports never reaches our finder."""
    with busy():
        from cryptography.exceptions import InvalidSignature  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: F401
            Ed25519PublicKey,
        )

        from secure_import.verify import envelope  # noqa: F401


class HighWater(Frozen):
    """Highest manifest version accepted so far, and the digest of its envelope."""

    _fields = ("version", "digest")
    __slots__ = _fields

    version: int
    digest: str

    def __init__(self, version: int, digest: str) -> None:
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "digest", digest)


class TrustedManifest(Frozen):
    """A manifest that passed every check, with what proves it."""

    _fields = ("manifest", "envelope_digest", "key_ids", "key_id_text")
    __slots__ = _fields

    manifest: Manifest
    envelope_digest: str
    key_ids: frozenset[str]
    #: The signing key ids as audit records name them (sorted, comma-joined):
    #: built once, not once per module loaded.
    key_id_text: str

    def __init__(self, manifest: Manifest, envelope_digest: str, key_ids: frozenset[str]) -> None:
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "envelope_digest", envelope_digest)
        object.__setattr__(self, "key_ids", key_ids)
        object.__setattr__(self, "key_id_text", ",".join(sorted(key_ids)))

    @property
    def high_water(self) -> HighWater:
        return HighWater(self.manifest.version, self.envelope_digest)


def verify_manifest(
    envelope_bytes: bytes,
    *,
    root: Root,
    now: datetime,
    high_water: HighWater | None,
    clock_slack: timedelta,
    max_version_jump: int,
    url: str | None = None,
    locked_digest: str | None = None,
    sigstore_bundle: SigstoreBundle | None = None,
) -> TrustedManifest:
    """Verify a manifest envelope completely: :func:`authenticate_manifest`,
    then :func:`check_manifest`.

    Raises:
        SignatureError, ThresholdError: not signed by enough pinned keys.
        FormatError, UnsafePathError: the signed payload is malformed.
        RootRotationError: signed under a different root version.
        ExpiredError, RollbackError, EquivocationError, FastForwardError.
        LockMismatchError: ``locked_digest`` is given and differs.
    """
    parsed, key_ids = authenticate_manifest(
        envelope_bytes, root=root, url=url, sigstore_bundle=sigstore_bundle
    )
    return check_manifest(
        parsed,
        key_ids=key_ids,
        digest=hashlib.sha256(envelope_bytes).hexdigest(),
        root=root,
        now=now,
        high_water=high_water,
        clock_slack=clock_slack,
        max_version_jump=max_version_jump,
        url=url,
        locked_digest=locked_digest,
    )


#: Supplies the Sigstore bundle published beside a manifest envelope, and the
#: URL it came from, or ``None`` when the repository publishes none.  Called
#: only when the pinned keys alone do not meet the threshold.
SigstoreBundle = Callable[[], tuple[bytes, str] | None]

#: Prefix of the signer label a verified Sigstore identity adds to the signer
#: ids (the audit records' ``key_id`` field names it in full).
SIGSTORE_SIGNER = "sigstore:"


def authenticate_manifest(
    envelope_bytes: bytes,
    *,
    root: Root,
    url: str | None = None,
    sigstore_bundle: SigstoreBundle | None = None,
) -> tuple[Manifest, frozenset[str]]:
    """The manifest an envelope carries, and the ids of the publishers that signed it.

    Signatures are checked against ``root``'s keys and threshold *before* the
    payload is parsed.  This decides only "did the publisher sign these bytes";
    whether they are acceptable now is :func:`check_manifest`'s question, asked
    every time (its answer depends on the clock and the high-water mark).

    When ``root`` pins Sigstore identities and its keys alone do not meet the
    threshold, the Sigstore bundle (from ``sigstore_bundle``) must verify over
    the envelope's payload against the root's pinned Sigstore trusted root and
    be signed by a pinned identity; it then counts once, and its signer label
    (``sigstore:issuer=... identity=...``) joins the returned ids.

    Raises:
        SignatureError, ThresholdError: not signed by enough pinned publishers.
        IdentityMismatchError: the bundle verifies but its signer is not pinned.
        SigstoreBundleError: the bundle is malformed or does not verify.
        FormatError, UnsafePathError: the signed payload is malformed.
    """
    from secure_import.verify import envelope

    if not root.identities:
        verified = envelope.verify(
            envelope_bytes,
            payload_type=envelope.MANIFEST_PAYLOAD_TYPE,
            keys=root.keys,
            threshold=root.threshold,
            url=url,
        )
        return manifest.parse(verified.payload, url=url), verified.key_ids
    signed = envelope.authenticate(
        envelope_bytes, payload_type=envelope.MANIFEST_PAYLOAD_TYPE, keys=root.keys, url=url
    )
    signers = set(signed.key_ids)
    if len(signers) < root.threshold:
        signers.add(_identity_signer(signed.payload, root, signers, sigstore_bundle, url))
        if len(signers) < root.threshold:
            raise ThresholdError(
                f"{len(signers)} of the {root.threshold} required publishers signed "
                f"(keys: {', '.join(sorted(signed.key_ids)) or 'none'}; and the pinned identity)",
                check="threshold",
                url=url,
                expected=root.threshold,
                got=len(signers),
            )
    return manifest.parse(signed.payload, url=url), frozenset(signers)


def _identity_signer(
    payload: bytes,
    root: Root,
    key_signers: set[str],
    sigstore_bundle: SigstoreBundle | None,
    url: str | None,
) -> str:
    """Verify the Sigstore bundle over ``payload``; the label of its pinned signer."""
    pinned = "; ".join(pin.describe() for pin in root.identities)
    found = None if sigstore_bundle is None else sigstore_bundle()
    if found is None:
        raise ThresholdError(
            f"{len(key_signers)} of the {root.threshold} required publishers signed, and "
            "the repository publishes no Sigstore bundle for the pinned identities",
            check="threshold",
            url=url,
            expected=f"a Sigstore bundle signed by: {pinned}",
            got=f"key signatures: {', '.join(sorted(key_signers)) or 'none'}; no bundle",
        )
    from secure_import.verify import identity, keyless

    bundle, bundle_url = found
    assert root.sigstore_root is not None  # Root.from_keys guarantees it
    signer = keyless.verify_bundle(
        payload, bundle, trusted_root=root.sigstore_root, url=bundle_url
    ).signer
    if not identity.matching(root.identities, signer):
        differences = " | ".join(
            f"{pin.describe()} ({'; '.join(identity.mismatches(pin, signer))})"
            for pin in root.identities
        )
        raise IdentityMismatchError(
            "the manifest's Sigstore bundle was signed by an identity that is not pinned",
            check="identity",
            url=bundle_url,
            expected=differences,
            got=signer.describe(),
        )
    return SIGSTORE_SIGNER + signer.describe()


def check_manifest(
    parsed: Manifest,
    *,
    key_ids: frozenset[str],
    digest: str,
    root: Root,
    now: datetime,
    high_water: HighWater | None,
    clock_slack: timedelta,
    max_version_jump: int,
    url: str | None = None,
    locked_digest: str | None = None,
) -> TrustedManifest:
    """Whether an authenticated manifest (envelope sha256 ``digest``) may be
    used now: its root version, the lock, expiry, rollback, equivocation and
    fast-forward.

    With ``locked_digest`` (frozen mode) the envelope must be exactly the
    locked one; expiry is then not enforced, because the lock, not the
    publisher's clock, decides what is current (a frozen deployment must keep
    importing the reviewed code after the publisher's expiry passes).

    Raises:
        RootRotationError: signed under a different root version.
        ExpiredError, RollbackError, EquivocationError, FastForwardError.
        LockMismatchError: ``locked_digest`` is given and differs.
    """
    if parsed.root_version != root.version:
        raise RootRotationError(
            "the manifest names another root version than the one that verified it",
            check="root-version",
            url=url,
            expected=root.version,
            got=parsed.root_version,
        )
    if locked_digest is not None and digest != locked_digest:
        raise LockMismatchError(
            "frozen mode: the repository's manifest is not the locked one",
            check="lock",
            url=url,
            expected=f"envelope sha256 {locked_digest}",
            got=f"envelope sha256 {digest} (version {parsed.version})",
        )
    if locked_digest is None and now > parsed.expires + clock_slack:
        raise ExpiredError(
            "the manifest has expired (a stale or frozen repository)",
            check="expiry",
            url=url,
            expected=f"now <= {manifest.format_time(parsed.expires)}",
            got=f"now = {manifest.format_time(now)}",
        )
    floor = high_water.version if high_water is not None else 0
    if high_water is not None:
        if parsed.version < high_water.version:
            raise RollbackError(
                "the manifest is older than one already accepted",
                check="rollback",
                url=url,
                expected=f"version >= {high_water.version}",
                got=parsed.version,
            )
        if parsed.version == high_water.version and digest != high_water.digest:
            raise EquivocationError(
                "the same manifest version was signed with different content",
                check="equivocation",
                url=url,
                expected=f"envelope sha256 {high_water.digest}",
                got=f"envelope sha256 {digest}",
            )
    if parsed.version > floor + max_version_jump:
        raise FastForwardError(
            "the manifest version jumps implausibly far ahead",
            check="fast-forward",
            url=url,
            expected=f"version <= {floor + max_version_jump}",
            got=parsed.version,
        )
    return TrustedManifest(parsed, digest, key_ids)


def verify_root_update(trusted: Root, data: bytes, *, url: str | None = None) -> Root:
    """Verify root ``trusted.version + 1`` and return it.

    A root that pins Sigstore identities follows no rotation: root documents
    carry keys only, and letting one replace a mixed key-and-identity pin
    would let the keys alone redefine who must sign.

    Raises:
        RootRotationError: not signed by both thresholds, not the next
            version, or ``trusted`` pins identities.
        FormatError: the root document is malformed.
    """
    if trusted.identities:
        raise RootRotationError(
            "a root that pins Sigstore identities follows no signed root rotation; "
            "re-pin the repository's publishers instead",
            check="root-rotation-identities",
            url=url,
        )
    from secure_import.verify import envelope

    try:
        by_old = envelope.verify(
            data,
            payload_type=envelope.ROOT_PAYLOAD_TYPE,
            keys=trusted.keys,
            threshold=trusted.threshold,
            url=url,
        )
    except SignatureError as exc:
        raise RootRotationError(
            f"the new root is not signed by a threshold of root {trusted.version}'s keys",
            check="root-signed-by-old",
            url=url,
            expected=exc.expected,
            got=exc.got,
        ) from exc
    new = rootmod.parse(by_old.payload, url=url)
    try:
        envelope.verify(
            data,
            payload_type=envelope.ROOT_PAYLOAD_TYPE,
            keys=new.keys,
            threshold=new.threshold,
            url=url,
        )
    except (SignatureError, ConfigError) as exc:
        raise RootRotationError(
            "the new root is not signed by a threshold of its own keys",
            check="root-signed-by-new",
            url=url,
            expected=new.threshold,
            got=getattr(exc, "got", None),
        ) from exc
    if new.version != trusted.version + 1:
        raise RootRotationError(
            "root versions must go up by exactly one",
            check="root-version",
            url=url,
            expected=trusted.version + 1,
            got=new.version,
        )
    return new


def check_root_fresh(current: Root, *, now: datetime, url: str | None = None) -> None:
    """The newest trusted root must not have expired.

    Raises:
        ExpiredError
    """
    if now > current.expires:
        raise ExpiredError(
            "the publisher's trust root has expired",
            check="root-expiry",
            url=url,
            expected=f"now <= {manifest.format_time(current.expires)}",
            got=f"now = {manifest.format_time(now)}",
        )
