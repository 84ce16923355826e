"""The trust state of one manifest update, as one ordered, pure state machine.

:class:`TrustState` holds what is trusted while a repository's manifest is
brought up to date: the current root (the pinned one, moved forward one
verified rotation at a time), the high-water mark read at the start, and in
the end the accepted manifest.  The caller (:mod:`secure_import.repository`)
does all the I/O: it reads the stored roots and the high-water mark, fetches
bytes, and acts on the verdicts (stores the new high-water mark, the memo, the
cache, the audit record).  This module only decides, so the order of the trust
steps can be read in one place and tested with bytes alone.  The idea is
python-tuf's ``TrustedMetadataSet``; the checks themselves are
:mod:`secure_import.verify.trust`'s.

Invariants a reader can check against the code below:

- the steps run in one order: roots (:meth:`TrustState.update_root`: each one
  signed by a threshold of the old keys *and* of its own, versions up by
  exactly one), then the manifest (:meth:`TrustState.verify`: signatures
  against the newest root *before* the payload is parsed, then root version,
  lock, expiry, rollback, equivocation, fast-forward), then acceptance
  (:meth:`TrustState.accept`: the newest root has not expired);
- only a manifest this state verified under the root now in force can be
  accepted: a rotation after a verification voids it;
- once a manifest is accepted nothing changes any more: no root update, no
  second verification, no second acceptance;
- the high-water mark only moves forward, and only for an accepted manifest;
- the clock is read once, by the caller, before the first step: every check
  of one update sees the same ``now``;
- a step taken out of order raises :class:`TrustOrderError` (a bug in the
  caller, never a verdict about data): nothing is trusted.

A repository's manifest memo (:mod:`secure_import.store.memo`) may stand in for
the signature check: :meth:`TrustState.verify` asks the caller's ``recall``
with the root now in force and the envelope's sha256, and the memo answers only
for a parse it sealed for exactly that pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from secure_import._frozen import Frozen
from secure_import.errors import RootRotationError, SecureImportError, ThresholdError
from secure_import.verify.manifest import Manifest
from secure_import.verify.root import Root
from secure_import.verify.trust import (
    HighWater,
    SigstoreBundle,
    TrustedManifest,
    authenticate_manifest,
    check_manifest,
    check_root_fresh,
    verify_root_update,
)

__all__ = ["Accepted", "Candidate", "Recall", "Rotation", "TrustOrderError", "TrustState"]

#: The caller's memo of earlier signature checks: ``(root, envelope sha256)`` ->
#: the authenticated manifest and its signing key ids, or ``None``.
Recall = Callable[[Root, str], tuple[Manifest, frozenset[str]] | None]


class TrustOrderError(RuntimeError):
    """A trust step was asked for out of order: a bug in the caller.

    Not a :class:`~secure_import.errors.SecureImportError`: no data can cause
    it, and it must not be mistaken for a verdict about a repository.  It fails
    closed all the same (nothing is accepted).
    """


class Rotation(Frozen):
    """A manifest failed in a way a newer root might explain: walk the signed
    root chain forward, up to ``up_to`` (``None``: until the server has no next root)."""

    _fields = ("up_to",)
    __slots__ = _fields

    up_to: int | None

    def __init__(self, up_to: int | None) -> None:
        object.__setattr__(self, "up_to", up_to)


class Candidate(Frozen):
    """A manifest that passed every check under one root, not yet accepted.

    ``recalled``: its signatures were vouched for by the caller's memo rather
    than checked now.
    """

    _fields = ("trusted", "recalled", "root_version")
    __slots__ = _fields

    trusted: TrustedManifest
    recalled: bool
    root_version: int

    def __init__(self, trusted: TrustedManifest, recalled: bool, root_version: int) -> None:
        object.__setattr__(self, "trusted", trusted)
        object.__setattr__(self, "recalled", recalled)
        object.__setattr__(self, "root_version", root_version)


class Accepted(Frozen):
    """The verdict of :meth:`TrustState.accept`, with what the caller must act on."""

    trusted: TrustedManifest
    #: The root the manifest was verified under (the newest one trusted).
    root: Root
    #: The high-water mark to store, or ``None`` when it does not move.
    new_high_water: HighWater | None
    #: Whether the caller should remember the authentication (it was checked
    #: now, not recalled).
    remember: bool

    _fields = ("trusted", "root", "new_high_water", "remember")
    __slots__ = _fields

    def __init__(
        self,
        trusted: TrustedManifest,
        root: Root,
        new_high_water: HighWater | None,
        remember: bool,
    ) -> None:
        init = object.__setattr__
        init(self, "trusted", trusted)
        init(self, "root", root)
        init(self, "new_high_water", new_high_water)
        init(self, "remember", remember)


class TrustState:
    """Root, high-water mark and accepted manifest of one update, in order.

    Build one per update, with the clock reading and the high-water mark read
    at its start; feed it roots, then manifest bytes; accept one candidate.
    """

    def __init__(
        self,
        pinned: Root,
        *,
        high_water: HighWater | None,
        now: datetime,
        clock_slack: timedelta,
        max_version_jump: int,
        url: str | None = None,
        locked_digest: str | None = None,
    ) -> None:
        """``pinned``: the root the user pinned (trust starts here and only
        moves forward).  ``url``: the manifest's URL, for error messages.
        ``locked_digest``: frozen mode, the sha256 of the only envelope accepted.
        """
        self._root = pinned
        self._high_water = high_water
        self._now = now
        self._clock_slack = clock_slack
        self._max_version_jump = max_version_jump
        self._url = url
        self._locked_digest = locked_digest
        self._accepted: Accepted | None = None
        #: Every candidate this state issued (an update makes at most a few).
        self._issued: list[Candidate] = []

    # -- what is trusted now --------------------------------------------------

    @property
    def root(self) -> Root:
        """The newest root trusted so far."""
        return self._root

    @property
    def high_water(self) -> HighWater | None:
        """The high-water mark: as read at the start, moved by an acceptance."""
        if self._accepted is not None and self._accepted.new_high_water is not None:
            return self._accepted.new_high_water
        return self._high_water

    @property
    def accepted(self) -> TrustedManifest | None:
        """The accepted manifest, once :meth:`accept` has run."""
        return None if self._accepted is None else self._accepted.trusted

    @property
    def now(self) -> datetime:
        return self._now

    def matches_lock(self, envelope: bytes) -> bool:
        """Frozen mode: whether ``envelope`` is the locked one (then the
        caller need not ask the server; the bytes are still verified)."""
        return (
            self._locked_digest is not None
            and hashlib.sha256(envelope).hexdigest() == self._locked_digest
        )

    # -- step 1: roots ----------------------------------------------------------

    def served_from(self, url: str) -> None:
        """Name the URL the envelope about to be verified was actually fetched
        from (a mirror of the repository), so every refusal names it."""
        self._url = url

    def update_root(self, data: bytes, *, url: str | None = None) -> Root:
        """Move trust to root ``self.root.version + 1`` if ``data`` is it.

        Raises:
            RootRotationError: not signed by both thresholds, or not the next
                version; the current root stays in force.
            FormatError: the root document is malformed.
            TrustOrderError: a manifest was already accepted.
        """
        self._refuse_if_done("update the root")
        self._root = verify_root_update(self._root, data, url=url)
        return self._root

    def rotation_for(self, exc: SecureImportError) -> Rotation | None:
        """Whether a newer root could explain ``exc``, raised by :meth:`verify`.

        Too few pinned keys signed (the publisher may have rotated), or the
        manifest names a *later* root than ours: walk forward.  Anything else,
        including a manifest naming an older or the same root, is final.
        """
        if self._root.identities:
            return None  # roots with Sigstore identities follow no rotation
        if isinstance(exc, ThresholdError):
            return Rotation(None)
        if isinstance(exc, RootRotationError):
            target = exc.got
            if isinstance(target, int) and target > self._root.version:
                return Rotation(target)
        return None

    # -- step 2: the manifest ---------------------------------------------------

    def verify(
        self,
        envelope: bytes,
        *,
        recall: Recall | None = None,
        sigstore_bundle: SigstoreBundle | None = None,
    ) -> Candidate:
        """Check a manifest envelope completely under the root now in force.

        ``recall`` (the caller's memo) may vouch for the signatures of exactly
        these bytes under exactly this root; every other check runs anyway,
        since its answer depends on the clock and the high-water mark.
        ``sigstore_bundle`` supplies the Sigstore bundle when the root pins
        identities (see :func:`~secure_import.verify.trust.authenticate_manifest`).

        Raises:
            SignatureError, ThresholdError: not signed by enough pinned keys.
            FormatError, UnsafePathError: the signed payload is malformed.
            RootRotationError: signed under a different root version.
            LockMismatchError, ExpiredError, RollbackError, EquivocationError,
            FastForwardError: authentic, but not acceptable now.
            TrustOrderError: a manifest was already accepted.
        """
        self._refuse_if_done("verify a manifest")
        digest = hashlib.sha256(envelope).hexdigest()
        remembered = None if recall is None else recall(self._root, digest)
        if remembered is None:
            parsed, key_ids = authenticate_manifest(
                envelope, root=self._root, url=self._url, sigstore_bundle=sigstore_bundle
            )
        else:
            parsed, key_ids = remembered
        trusted = check_manifest(
            parsed,
            key_ids=key_ids,
            digest=digest,
            root=self._root,
            now=self._now,
            high_water=self._high_water,
            clock_slack=self._clock_slack,
            max_version_jump=self._max_version_jump,
            url=self._url,
            locked_digest=self._locked_digest,
        )
        candidate = Candidate(trusted, remembered is not None, self._root.version)
        self._issued.append(candidate)
        return candidate

    # -- step 3: acceptance -----------------------------------------------------

    def accept(self, candidate: Candidate) -> Accepted:
        """Accept a verified manifest: the last step, taken once.

        Raises:
            ExpiredError: the newest trusted root has expired.
            TrustOrderError: already accepted, ``candidate`` did not come from
                this state's :meth:`verify`, or it was verified under another
                root than the one now in force.
        """
        self._refuse_if_done("accept a second manifest")
        if not any(issued is candidate for issued in self._issued):
            raise TrustOrderError("only a manifest this trust state verified can be accepted")
        if candidate.root_version != self._root.version:
            raise TrustOrderError(
                f"the manifest was verified under root {candidate.root_version}, "
                f"root {self._root.version} is now in force: verify it again"
            )
        check_root_fresh(self._root, now=self._now, url=self._url)
        trusted = candidate.trusted
        mark = self._high_water
        moves = mark is None or trusted.manifest.version > mark.version
        self._accepted = Accepted(
            trusted=trusted,
            root=self._root,
            new_high_water=trusted.high_water if moves else None,
            remember=not candidate.recalled,
        )
        return self._accepted

    def _refuse_if_done(self, step: str) -> None:
        if self._accepted is not None:
            raise TrustOrderError(f"cannot {step}: a manifest was already accepted")
