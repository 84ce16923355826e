"""A manifest update: the I/O around :class:`~secure_import.verify.trustset.TrustState`.

:class:`ManifestUpdater` fetches, reads and writes; the trust state decides.
For one update (once per process and repository, see
:meth:`secure_import.repository.Repository.trusted_manifest`):

1. read the high-water mark (state directory) and fix the clock reading;
2. ask the server whether the cached envelope is current (the publisher's
   manifest pointer, :mod:`secure_import.transport.freshness`), else for the
   manifest envelope, from a worker thread when a copy is cached (no request
   at all when offline, or frozen with the locked envelope cached);
3. meanwhile, feed the trust state the stored root rotations, verify the
   cached envelope and read the bytecode pack of the package being imported
   (used only if the answer leaves the cached envelope in force);
4. verify the answer (or, when the pointer names the cached copy or the
   server is unreachable, the cached copy)
   under the newest root (when identities are pinned and the keys fall
   short, the trust code asks for the Sigstore bundle: the cached one for the
   cached envelope, else the server's); on a threshold or root-version
   failure, walk the signed root chain forward on the server, storing and
   auditing each step the trust state accepts, and verify once more;
5. accept (the newest root must not have expired), then act on the verdict:
   store the new high-water mark, cache the envelope and the Sigstore bundle
   that counted, audit the manifest (``offline`` when the cached copy stood
   in), remember the authentication in the memo, adopt the prepared bytecode
   pack.

Nothing is stored, cached, remembered or adopted for a manifest the trust
state did not accept.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from datetime import datetime

from secure_import.assembly import Assembler, Pack
from secure_import.config import MANIFEST_NAME, SIGSTORE_BUNDLE_NAME, Limits
from secure_import.errors import (
    CacheCorruptError,
    ExpiredError,
    FormatError,
    HTTPStatusError,
    OfflineError,
    RollbackError,
    RootRotationError,
    SecureImportError,
    SignatureError,
    ThresholdError,
    TransportError,
    TrustError,
    UnsafePathError,
)
from secure_import.store.cache import Cache
from secure_import.store.memo import ManifestMemo
from secure_import.store.state import StateStore
from secure_import.transport.mirrorpolicy import served_host
from secure_import.update.roots import RootChain
from secure_import.verify.root import Root
from secure_import.verify.trust import SigstoreBundle, TrustedManifest
from secure_import.verify.trustset import Candidate, TrustState

# The transport modules (the freshness request, its worker thread) and the
# Sigstore modules are imported where they are used: an offline or frozen
# update needs none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.transport.background import InBackground
    from secure_import.transport.base import Response, Transport

    _Request = InBackground[Response]

__all__ = ["ManifestUpdater"]


class _Prepared:
    """The cached envelope verified, and the bytecode pack of the top-level
    name being imported, while the freshness request was in flight."""

    __slots__ = ("candidate", "pack")

    def __init__(self, candidate: Candidate, pack: Pack | None) -> None:
        self.candidate = candidate
        self.pack = pack


#: Checks of a pinned key's signature that fail only when the signed bytes
#: changed (see :func:`secure_import.verify.envelope.verify`).
_TAMPERED = frozenset({"signature-invalid", "payload-type"})


def _is_damage(exc: SecureImportError) -> bool:
    """Whether a failure of the cached envelope means its bytes are no longer
    the ones accepted (only an accepted envelope is ever cached): truncated,
    emptied, not well formed, or a pinned key's signature no longer matching
    them.  Such a copy is discarded and the manifest fetched again in full.

    Not damage, so the refusal stands as it would for the server's copy: a
    verdict about authentic bytes (expired, rollback, lock mismatch, a later
    root: THREATS L2), and bytes no pinned key or identity claims to have
    signed, which a change of pins explains as well as an attacker (keys
    re-pinned, another Sigstore trusted root).
    """
    if isinstance(exc, FormatError | UnsafePathError):
        return True
    return isinstance(exc, SignatureError) and exc.check in _TAMPERED


class ManifestUpdater:
    """Brings one repository's manifest up to date (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        repo_id: str,
        pinned_root: Root,
        limits: Limits,
        clock: Callable[[], datetime],
        offline: bool,
        locked_digest: str | None,
        cache: Cache,
        state: StateStore,
        memo: ManifestMemo,
        assembly: Assembler,
        transport: Callable[[], Transport],
        record: Callable[..., None],
    ) -> None:
        """``transport``: the repository's transport, built on first use.
        ``record``: appends an audit record about the repository."""
        self.url = url
        self.repo_id = repo_id
        self.pinned_root = pinned_root
        self.limits = limits
        self._clock = clock
        self.offline = offline
        self.locked_digest = locked_digest
        self.cache = cache
        self.state = state
        self.memo = memo
        self.assembly = assembly
        self._transport = transport
        self._record = record
        #: The Sigstore bundle fetched with a new envelope (cached once accepted).
        self._fetched_bundle: bytes | None = None
        #: The deadline of the import the current update is part of.
        self._deadline: float | None = None
        self._roots = RootChain(
            self.url_for,
            repo_id=repo_id,
            limits=limits,
            state=state,
            transport=transport,
            record=record,
        )

    @property
    def manifest_url(self) -> str:
        return self.url + MANIFEST_NAME

    def url_for(self, path: str) -> str:
        return self.url + path

    def load(self, prepare: str | None, *, deadline: float | None = None) -> TrustedManifest:
        """One manifest update: this method does the I/O, :class:`TrustState`
        decides (roots, then the manifest, then acceptance), and each verdict
        is acted on here (high-water mark, cache, audit record, memo).

        ``deadline`` (``time.monotonic``): the import's, bounding every request
        of the update besides each download's own deadline.

        A cached envelope that no longer verifies (damaged, truncated, emptied:
        see :func:`_is_damage`) is discarded and audited as ``cache-corrupt``,
        and the manifest fetched in full once, whatever the pointer says.

        Raises:
            CacheCorruptError: the cached envelope is damaged and the
                repository is offline (nothing can replace it).
            TrustError, TransportError: nothing was accepted; a transport
                error names the URL actually requested.
        """
        self._fetched_bundle = None
        self._deadline = deadline
        trust = TrustState(
            self.pinned_root,
            high_water=self.state.high_water(self.repo_id),
            now=self._clock(),
            clock_slack=self.limits.clock_slack,
            max_version_jump=self.limits.max_version_jump,
            url=self.manifest_url,
            locked_digest=self.locked_digest,
        )
        cached = self.cache.get_metadata(self.repo_id, MANIFEST_NAME)
        request = self._ask_server(cached, trust)
        if request is not None and cached is not None:
            # Nothing else runs until the request is out (both threads would
            # compete for the interpreter lock); then the wait is ours to fill.
            request.wait_ready()
        self._roots.adopt_stored(trust)
        early = None
        if cached is not None:
            early, damage = self._prepare(cached, trust, prepare)
            if damage is not None:
                self._discard_cached(cached, damage)
                cached = None
                if request is None:
                    # Frozen with the locked envelope cached: the one case
                    # that asked nothing.  Ask now, in full.
                    request = self._ask_server(None, trust)
        body, fresh, served, offline_reason = self._manifest_bytes(cached, request)
        from_mirror = served is not None and not served.startswith(self.url)
        if fresh is not None and served is not None and served != self.manifest_url:
            trust.served_from(served)  # refusals name the URL that served it
        try:
            return self._verify_and_accept(trust, body, fresh, served, offline_reason, early)
        except TrustError as exc:
            if fresh is not None and from_mirror and served is not None:
                self._record_mirror_refusal(exc, served)
            raise

    def _record_mirror_refusal(self, exc: TrustError, served: str) -> None:
        """Audit a manifest a mirror served that was refused, naming the mirror
        (THREATS H11): a validly signed but older or expired one is a mirror
        serving stale data; anything else failed verification outright."""
        stale = isinstance(exc, RollbackError | ExpiredError)
        self._record(
            "mirror",
            outcome="refused",
            url=served,
            host=served_host(served),
            code=exc.code,
            message=(
                "a mirror served stale data (a validly signed but older or expired manifest)"
                if stale
                else "a mirror served a manifest that failed verification"
            )
            + f": {exc}",
        )

    def _verify_and_accept(
        self,
        trust: TrustState,
        body: bytes,
        fresh: bytes | None,
        served: str | None,
        offline_reason: TransportError | None,
        early: _Prepared | None,
    ) -> TrustedManifest:
        """Verify ``body`` under ``trust``, accept it and act on the verdict."""
        try:
            if early is not None and fresh is None:
                # The server left us with the cached envelope (304, or it is
                # unreachable): the very bytes _prepare verified, under the
                # same trust state.
                candidate = early.candidate
            else:
                candidate = trust.verify(
                    body, recall=self.memo.load, sigstore_bundle=self._sigstore_bundle(fresh)
                )
        except (ThresholdError, RootRotationError) as exc:
            # Maybe the publisher rotated its keys: walk the signed root chain
            # (only ever forward, each step checked), then try once more.
            rotation = trust.rotation_for(exc)
            if self.offline or rotation is None:
                raise
            before = trust.root.version
            self._roots.rotate(trust, up_to=rotation.up_to, deadline=self._deadline)
            if trust.root.version == before:
                raise
            candidate = trust.verify(
                body, recall=self.memo.load, sigstore_bundle=self._sigstore_bundle(fresh)
            )
        verdict = trust.accept(candidate)
        trusted = verdict.trusted
        if verdict.new_high_water is not None:
            self.state.set_high_water(self.repo_id, verdict.new_high_water)
        if fresh is not None:
            try:
                self.cache.put_metadata(self.repo_id, MANIFEST_NAME, fresh)
                if self._fetched_bundle is not None:
                    # The bundle that counted for this envelope, for the
                    # next process that holds no memo of it.
                    self.cache.put_metadata(
                        self.repo_id, SIGSTORE_BUNDLE_NAME, self._fetched_bundle
                    )
            except OSError as exc:
                warnings.warn(f"secure_import: could not cache the manifest: {exc}", stacklevel=2)
        self._record(
            "manifest",
            outcome="offline" if offline_reason is not None else "ok",
            url=self.manifest_url,
            host=None if served is None else served_host(served),
            sha256=trusted.envelope_digest,
            manifest_version=trusted.manifest.version,
            key_id=trusted.key_id_text,
            message=None
            if offline_reason is None
            else f"offline mode: {offline_reason}"
            if isinstance(offline_reason, OfflineError)
            else f"server unreachable: {offline_reason}",
        )
        if verdict.remember:
            # Only now is the manifest accepted (root fresh, high-water mark
            # stored, load audited): nothing is remembered for one refused.
            self.memo.save(verdict.root, trusted.envelope_digest, trusted.manifest, trusted.key_ids)
        if (
            early is not None
            and early.pack is not None
            and early.candidate.trusted.envelope_digest == trusted.envelope_digest
        ):
            # Bound to the entries of the manifest now accepted: use it.
            self.assembly.adopt_pack(*early.pack)
        return trusted

    def _sigstore_bundle(self, fresh: bytes | None) -> SigstoreBundle | None:
        """The supplier of the Sigstore bundle for the envelope being verified
        (``fresh``: the server's new envelope; ``None``: the cached one), or
        ``None`` when no identity is pinned.

        Called by the trust code only when the pinned keys alone do not meet
        the threshold and no memo vouches for the envelope.  For the cached
        envelope the cached bundle is tried first; otherwise (and when none is
        cached) the server's, capped, with a 404 meaning "none published".
        Nothing it returns is trusted: the trust code verifies it.
        """
        if not self.pinned_root.identities:
            return None

        def supply() -> tuple[bytes, str] | None:
            url = self.url_for(SIGSTORE_BUNDLE_NAME)
            if fresh is None:
                cached = self.cache.get_metadata(self.repo_id, SIGSTORE_BUNDLE_NAME)
                if cached is not None or self.offline:
                    return None if cached is None else (cached, url)
            try:
                from secure_import.verify.keyless import MAX_BUNDLE_BYTES

                response = self._transport().get(
                    url, cap=MAX_BUNDLE_BYTES, what="Sigstore bundle", deadline=self._deadline
                )
            except HTTPStatusError as exc:
                if exc.got == 404:
                    return None
                raise
            assert response.body is not None
            if fresh is not None:
                self._fetched_bundle = response.body
            return response.body, url

        return supply

    def _ask_server(self, cached: bytes | None, trust: TrustState) -> _Request | None:
        """Start the manifest request, or ``None`` when none is to be made
        (offline, or frozen with the locked envelope in the cache).

        With a cached envelope the request asks the pointer first and runs in a
        worker thread, so that the caller can prepare the cached copy meanwhile.
        """
        if self.offline or (cached is not None and trust.matches_lock(cached)):
            return None
        deadline = self._deadline

        from secure_import.transport.background import InBackground
        from secure_import.transport.freshness import ask_manifest

        try:
            fetcher = self._transport()  # built here: setting up TLS needs the interpreter
        except TransportError as exc:
            failure = exc  # e.g. an unreadable CA bundle: a failed request, as ever

            def fail(ready: Callable[[], None]) -> Response:
                raise failure

            return InBackground(fail, background=False)

        def ask(ready: Callable[[], None]) -> Response:
            # The publisher's pointer, not the server's ETag, says whether the
            # cached envelope is current (THREATS H5, H6).
            return ask_manifest(
                fetcher,
                self.url,
                cached=cached,
                limits=self.limits,
                waiting=ready,
                deadline=deadline,
            )

        return InBackground(ask, background=cached is not None)

    def _prepare(
        self, cached: bytes, trust: TrustState, top: str | None
    ) -> tuple[_Prepared | None, SecureImportError | None]:
        """Work done on the cached envelope, while the server is being asked
        (when it is): ``(prepared, damage)``.

        Verifies it exactly as it would be once the answer comes, and reads
        the authenticated bytecode pack of ``top`` for its entries.  Nothing
        here is trusted, cached, audited or run: if the server answers with a
        new manifest, all of it is dropped; if the answer leaves us with these
        bytes (304, offline, or the server is unreachable), it is the same
        work the import would do next, done during the wait.

        ``prepared`` is ``None`` if the cached copy does not verify: it is
        verified again, and refused with the proper error, only if it is still
        needed.  ``damage`` is set when the failure means the cached bytes are
        not the ones accepted (:func:`_is_damage`): the caller discards them.
        """
        try:
            candidate = trust.verify(
                cached, recall=self.memo.load, sigstore_bundle=self._sigstore_bundle(None)
            )
        except SecureImportError as exc:
            return None, exc if _is_damage(exc) else None
        return _Prepared(candidate, self.assembly.pack_for(candidate.trusted.manifest, top)), None

    def _discard_cached(self, cached: bytes, damage: SecureImportError) -> None:
        """Delete a damaged cached envelope (and the Sigstore bundle cached
        with it) and audit it, like a corrupt cached file.

        Raises:
            CacheCorruptError: the repository is offline: nothing can
                replace the copy (the remedy is a prefetch while online).
            AuditWriteError: the record could not be written.
        """
        offline = self.offline
        for name in (MANIFEST_NAME, SIGSTORE_BUNDLE_NAME):
            try:
                self.cache.drop_metadata(self.repo_id, name)
            except OSError as exc:
                warnings.warn(
                    f"secure_import: could not delete the damaged cached {name}: {exc}",
                    stacklevel=3,
                )
        self._record(
            "cache-corrupt",
            outcome="discarded",
            url=self.manifest_url,
            sha256=hashlib.sha256(cached).hexdigest(),
            code=CacheCorruptError.code,
            message=f"the cached manifest envelope no longer verified ({damage.code}); discarded"
            + (" (offline: nothing can replace it)" if offline else " and fetched again in full"),
        )
        if offline:
            raise CacheCorruptError(
                "the cached manifest envelope no longer verified and was discarded; this "
                "repository is offline, so it cannot be fetched again",
                check="cached-manifest",
                url=self.manifest_url,
                expected="the envelope accepted earlier",
                got=damage.detail,
            ) from damage

    def _manifest_bytes(
        self, cached: bytes | None, request: _Request | None
    ) -> tuple[bytes, bytes | None, str | None, TransportError | None]:
        """Untrusted manifest bytes to verify: ``(body, fresh, served, offline_reason)``.

        ``fresh`` is set when the body came from the server (to be cached once
        it verifies); ``served`` is the URL that answered (the origin's or a
        mirror's; ``None`` when no server did); ``offline_reason`` when the
        server failed and the cached copy stands in (it is verified exactly
        like a fresh one).
        """
        if request is None and not self.offline:
            assert cached is not None
            return cached, None, None, None  # frozen and prefetched: no request at all
        try:
            if request is None:
                raise OfflineError(
                    "offline mode: the server is not contacted"
                    + ("" if cached is not None else ", and no manifest is cached"),
                    check="offline",
                    url=self.manifest_url,
                )
            response = request.result()
        except TransportError as exc:
            if cached is None:
                raise
            return cached, None, None, exc
        if response.status == 304:
            if cached is not None:
                return cached, None, response.url, None
            # "Unchanged" about a copy we no longer hold (it was damaged):
            # the manifest itself, in full, once.
            response = self._transport().get(
                self.manifest_url,
                cap=self.limits.manifest_max_bytes,
                what="manifest",
                deadline=self._deadline,
            )
        assert response.body is not None
        return response.body, response.body, response.url, None

    def current_root(self) -> Root:
        """The pinned root moved forward through every stored, re-verified rotation."""
        trust = TrustState(
            self.pinned_root,
            high_water=None,
            now=self._clock(),
            clock_slack=self.limits.clock_slack,
            max_version_jump=self.limits.max_version_jump,
        )
        self._roots.adopt_stored(trust)
        return trust.root
