"""The orchestrator: fetch -> verify -> cache -> audit, for one repository.

This is the only module that mixes network, disk and trust.  The decisions
themselves are made by pure code: the order of the trust steps by
:class:`~secure_import.verify.trustset.TrustState` (roots, then the manifest,
then acceptance), the checks by :mod:`.envelope`, :mod:`.manifest` and
:mod:`.trust`; this module feeds them bytes and acts on the verdicts.

Order of work for a module (the finder calls these):

1. :meth:`Repository.trusted_manifest` — once per process: fetch the manifest
   envelope (conditional on the cached copy's ETag), have the trust state
   verify it against the newest root *before parsing*, check expiry and the
   high-water mark and accept it, then record the new high-water mark (state
   dir) and cache the envelope.  When the server cannot be reached, a cached
   envelope that still passes every check is used and the fallback is audited.
   While the conditional request is in flight (a worker thread), the cached
   envelope is verified and the bytecode pack of the package being imported is
   read; that work is used only if the answer leaves the cached envelope in
   force (304 or unreachable server).
2. :meth:`Repository.find` — name to manifest entry; a name that is not listed
   is refused without any request.
3. :meth:`Repository.source` — the verified bytes: from this process's memory,
   else from the cache (re-hashed), else fetched.  The first time a top-level
   package is used, *all* its modules are verified (fetched concurrently when
   cold), so one altered file stops the whole package before any of it runs.

No byte that failed a check is returned, cached or executed.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, NamedTuple

from secure_import._guard import busy
from secure_import.config import MANIFEST_NAME, SIGSTORE_BUNDLE_NAME, Limits
from secure_import.errors import (
    ConfigError,
    ConnectionFailedError,
    HTTPStatusError,
    LengthMismatchError,
    NotListedError,
    RootRotationError,
    SecureImportError,
    ThresholdError,
    TooLargeError,
    TransportError,
)
from secure_import.pinning import KeySpec, PublisherSpec, TrustedRootSpec, pinned_root
from secure_import.store.audit import AuditLog
from secure_import.store.bytecode import BytecodeStore, compile_verified
from secure_import.store.cache import Cache
from secure_import.store.materialise import MaterialiseStore, package_entries
from secure_import.store.memo import ManifestMemo
from secure_import.store.paths import Paths
from secure_import.store.state import StateStore, repo_id
from secure_import.transport.background import InBackground
from secure_import.transport.base import Response, Transport
from secure_import.transport.freshness import ask_manifest
from secure_import.transport.https import Fetcher, TransportOptions, load_network_stack
from secure_import.verify.bundle import bundle_entries, bundle_path
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.keyless import MAX_BUNDLE_BYTES
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.names import is_never_remote, normalize_url
from secure_import.verify.root import ROOTS_DIR, Root
from secure_import.verify.trust import SigstoreBundle, TrustedManifest
from secure_import.verify.trustset import Candidate, TrustState

if TYPE_CHECKING:
    from secure_import.transport.s3 import S3Location

__all__ = ["MANIFEST_NAME", "KeySpec", "Repository"]

#: After a failed manifest fetch, imports fail fast with the same error for
#: this many seconds instead of hitting the server for every unknown name.
_RETRY_AFTER = 30.0

#: Fetch a cold package as one bundle when more than this many modules are missing.
_BUNDLE_THRESHOLD = 2

_Request = InBackground[Response]


class _Prepared(NamedTuple):
    """The cached envelope verified, and the bytecode pack of the top-level
    name being imported, while the freshness request was in flight."""

    candidate: Candidate
    pack: tuple[str, list[FileEntry], list[CodeType]] | None


_FOLLOW = {False: "no", True: "direct", "no": "no", "direct": "direct", "transitive": "transitive"}


def _follow_level(value: bool | str) -> str:
    level = _FOLLOW.get(value) if isinstance(value, bool | str) else None
    if level is None:
        raise ConfigError(
            "trust_dependencies is false, true (one level) or 'transitive'",
            check="trust-dependencies",
            got=repr(value),
        )
    return level


def _check_materialise(materialise: bool | Iterable[str]) -> bool | frozenset[str]:
    """``True``/``False``, or the top-level names to materialise."""
    if isinstance(materialise, bool):
        return materialise
    if isinstance(materialise, str):
        materialise = [materialise]
    names = frozenset(materialise)
    for name in names:
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ConfigError(
                "materialise takes true/false or a list of top-level package names",
                check="materialise",
                got=repr(name),
            )
    return names


def _check_modules(modules: Iterable[str] | None) -> frozenset[str] | None:
    if modules is None:
        return None
    if isinstance(modules, str):
        modules = [modules]
    names = frozenset(modules)
    for name in names:
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ConfigError(
                "allowed module names must be top-level identifiers",
                check="modules",
                got=repr(name),
            )
        if is_never_remote(name):
            raise ConfigError(
                f"{name!r} is never served remotely (start-up hook, standard library, "
                "or secure_import itself)",
                check="modules",
                got=name,
            )
    return names


def _s3_location(url: str, transport: TransportOptions | None, endpoint: str | None) -> S3Location:
    """The bucket and prefix of an ``s3://`` repository URL (no request made).

    Raises:
        InsecureURLError: a malformed ``s3://`` URL, or a non-https endpoint
            (given, or from the environment).
        ConfigError: https-only options (credentials header, client
            certificate, system trust store) given for object storage, whose
            credentials come from the standard AWS chain.
    """
    from secure_import.transport.s3 import check_endpoint, parse_s3_url

    location = parse_s3_url(url)
    check_endpoint(endpoint)
    if transport is not None and not transport.is_default:
        raise ConfigError(
            "auth, client certificates and the system trust store apply to https "
            "repositories; an s3:// repository takes its credentials from the AWS chain",
            check="s3-options",
            url=location.url,
        )
    return location


class Repository:
    """One trusted remote repository: its URL, pinned root and local stores.

    What it talks to can be injected, so a second transport or a test double
    plugs in without touching the trust code:

    - ``connect``: builds the :class:`~secure_import.transport.base.Transport`
      the repository fetches through, called when the first request is about
      to be made (again after :meth:`close`).  Default: the HTTPS
      :class:`~secure_import.transport.https.Fetcher` for ``url`` with
      ``ca_bundle`` and ``transport``; the network stack is then imported
      here, not inside the import hook.
    - ``cache``, ``state``, ``audit``, ``bytecode``, ``memo``: the stores, by
      default each under ``paths`` as always.  Whatever comes in, trust is
      decided the same way: every byte a transport or a store returns is
      verified again here.
    """

    def __init__(
        self,
        url: str,
        *,
        keys: Sequence[KeySpec] = (),
        threshold: int = 1,
        root_version: int = 1,
        modules: Iterable[str] | None = None,
        publishers: Sequence[PublisherSpec] = (),
        sigstore_trusted_root: TrustedRootSpec | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        paths: Paths | None = None,
        limits: Limits | None = None,
        clock: Callable[[], datetime] | None = None,
        offline: bool = False,
        lock: str | os.PathLike[str] | None = None,
        transport: TransportOptions | None = None,
        trust_dependencies: bool | str = False,
        unsafe_undeclared_imports: bool = False,
        connect: Callable[[], Transport] | None = None,
        cache: Cache | None = None,
        state: StateStore | None = None,
        audit: AuditLog | None = None,
        bytecode: BytecodeStore | None = None,
        memo: ManifestMemo | None = None,
        s3_endpoint: str | None = None,
        s3_region: str | None = None,
        materialise: bool | Iterable[str] = False,
    ) -> None:
        self._s3: S3Location | None = None
        if url.startswith("s3://"):
            self._s3 = _s3_location(url, transport, s3_endpoint)
            self.url = self._s3.url
        else:
            if s3_endpoint is not None or s3_region is not None:
                raise ConfigError(
                    "s3_endpoint and s3_region apply to s3:// repositories only",
                    check="s3-options",
                    url=url,
                )
            # Refuses http:// before any request; one spelling per repository.
            self.url = normalize_url(url)
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        self.modules = _check_modules(modules)
        #: Whether the signed dependency declarations of this repository are
        #: followed to repositories the consumer did not pin (a widening):
        #: ``"no"``, ``"direct"`` (one level) or ``"transitive"``.
        self.trust_dependencies = _follow_level(trust_dependencies)
        #: Let this repository's code import names other repositories serve
        #: without a signed declaration (the behaviour before declarations).
        self.unsafe_undeclared_imports = bool(unsafe_undeclared_imports)
        #: The publisher as the user pinned it; rotations recorded in the state
        #: directory move trust forward from here, never back.
        self.pinned_root = pinned_root(
            keys=keys,
            publishers=publishers,
            threshold=threshold,
            root_version=root_version,
            sigstore_trusted_root=sigstore_trusted_root,
        )
        #: Keys the state, cache and memo of this repository: its URL *and*
        #: its pinned keys and identities, so a repository pinned to other
        #: keys at the same URL (however spelled) never touches this one's
        #: high-water mark, cached manifest or memo.
        self.id = repo_id(
            self.url,
            key_ids=[k.key_id for k in self.pinned_root.keys]
            + [repr(i) for i in self.pinned_root.identities],
        )
        self.ca_bundle = None if ca_bundle is None else Path(ca_bundle)
        #: Credentials, client certificate, trust store (private repositories).
        self.transport = transport
        self.limits = limits or Limits()
        self.paths = paths or Paths.default()
        self.cache = Cache(self.paths.cache_dir) if cache is None else cache
        self.state = StateStore(self.paths.state_dir) if state is None else state
        self.audit = (
            AuditLog(self.paths.audit_log, witness=self.paths.audit_witness)
            if audit is None
            else audit
        )
        self.bytecode = (
            BytecodeStore(self.paths.cache_dir, self.paths.state_dir)
            if bytecode is None
            else bytecode
        )
        self.memo = (
            ManifestMemo(self.paths.cache_dir, self.paths.state_dir, owner=self.id)
            if memo is None
            else memo
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Never contact the server: the cached manifest (verified exactly as a
        #: fresh one, so it must be unexpired and not below the high-water mark)
        #: and cached files only.
        self.offline = offline
        #: Frozen mode: the sha256 of the only manifest envelope accepted.
        self.locked_digest: str | None = None
        #: The lock file of frozen mode (repositories reached through
        #: dependency declarations are held to it too).
        self.lock_file = None if lock is None else Path(lock)
        if lock is not None:
            from secure_import.store.lock import read_lock

            entry = read_lock(lock).get(self.url)
            if entry is None:
                raise ConfigError(
                    "frozen mode: this repository is not in the lock file",
                    check="lock",
                    url=self.url,
                    got=str(lock),
                )
            self.locked_digest = entry.manifest_sha256
        self._connect = connect or (self._connect_https if self._s3 is None else self._connect_s3)
        self._fetcher: Transport | None = None
        self._lock = threading.RLock()
        self._trusted: TrustedManifest | None = None
        #: The Sigstore bundle fetched with a new envelope (cached once accepted).
        self._fetched_bundle: bytes | None = None
        self._failure: tuple[SecureImportError, float] | None = None
        self._verified: dict[str, bytes] = {}
        #: Code objects from authenticated bytecode, found while verifying a
        #: package and handed out once by :meth:`code`.
        self._code: dict[tuple[str, str], CodeType] = {}
        self._ready_tops: set[str] = set()
        #: Materialise mode: ``True`` for every package of this repository, or
        #: the top-level names whose verified files are written to a private
        #: directory so ``__file__`` is a real path (see :mod:`.store.materialise`).
        self.materialise = _check_materialise(materialise)
        self.materialised = MaterialiseStore(self.paths.cache_dir, self.id)
        #: Top-level name -> its verified materialised root, once per process.
        self._trees: dict[str, Path] = {}
        if connect is None and not self.offline and self.locked_digest is None:
            # The first import will ask the server (at least a conditional
            # request): load the network stack now, not inside the import hook.
            # Offline and frozen repositories may never need it.
            if self._s3 is None:
                load_network_stack()
            else:
                from secure_import.transport.s3 import import_obstore

                import_obstore()  # also: a missing 's3' extra is reported here

    # -- plumbing ---------------------------------------------------------

    @property
    def fetcher(self) -> Transport:
        """The transport, built on first use.

        Raises:
            TransportError, ConfigError: it cannot be built (e.g. an unreadable
                CA bundle).
        """
        if self._fetcher is None:
            self._fetcher = self._connect()
        return self._fetcher

    def _connect_https(self) -> Transport:
        return Fetcher(
            self.url, limits=self.limits, ca_bundle=self.ca_bundle, transport=self.transport
        )

    def _connect_s3(self) -> Transport:
        """Object storage through obstore: the same verification, another transport."""
        from secure_import.transport.s3 import S3Options, S3Transport

        assert self._s3 is not None
        options = S3Options(
            endpoint=self.s3_endpoint, region=self.s3_region, ca_bundle=self.ca_bundle
        )
        return S3Transport(self._s3, options, limits=self.limits)

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    def url_for(self, path: str) -> str:
        return self.url + path

    @property
    def manifest_url(self) -> str:
        return self.url + MANIFEST_NAME

    def record(self, event: str, *, outcome: str, **fields: object) -> None:
        """Append an audit record about this repository (raises AuditWriteError)."""
        self.audit.append(event, outcome=outcome, repo=self.url, **fields)

    def record_load(
        self,
        *,
        module: str,
        url: str,
        sha256: str,
        trusted: TrustedManifest,
        via: str | None = None,
    ) -> None:
        """Audit one module about to run (raises AuditWriteError).

        ``via``: the dependency declaration that allowed the load, if it came
        through a dependency edge (named in the record).
        """
        if via is not None:
            self.audit.append(
                "load",
                outcome="ok",
                module=module,
                url=url,
                sha256=sha256,
                repo=self.url,
                manifest_version=trusted.manifest.version,
                key_id=trusted.key_id_text,
                via=via,
            )
            return
        self.audit.append_load(
            module=module,
            url=url,
            sha256=sha256,
            repo=self.url,
            manifest_version=trusted.manifest.version,
            key_id=trusted.key_id_text,
        )

    def record_refusal(self, exc: SecureImportError, *, module: str | None) -> None:
        self.record(
            "refuse",
            outcome="refused",
            module=module,
            url=exc.url,
            code=exc.code,
            message=str(exc),
        )

    # -- manifest ---------------------------------------------------------

    def trusted_manifest(self, *, prepare: str | None = None) -> TrustedManifest:
        """The verified manifest, fetched and checked once per process.

        ``prepare``: the top-level name about to be imported.  While the
        freshness request is in flight, its authenticated bytecode pack is read
        from the cache (see :meth:`_prepare`), so a 304 costs one round trip
        and little else.

        Raises:
            TrustError, TransportError, LocalStateError: nothing was trusted.
        """
        with self._lock:
            if self._trusted is not None:
                return self._trusted
            if self._failure is not None:
                error, when = self._failure
                if time.monotonic() - when < _RETRY_AFTER:
                    raise error
            try:
                trusted = self._load_manifest(prepare)
            except SecureImportError as exc:
                if isinstance(exc, TransportError):
                    self._failure = (exc, time.monotonic())
                raise
            self._trusted = trusted
            self._failure = None
            return trusted

    def _load_manifest(self, prepare: str | None) -> TrustedManifest:
        """One manifest update: this method does the I/O, :class:`TrustState`
        decides (roots, then the manifest, then acceptance), and each verdict
        is acted on here (high-water mark, cache, audit record, memo)."""
        self._fetched_bundle = None
        trust = TrustState(
            self.pinned_root,
            high_water=self.state.high_water(self.id),
            now=self._clock(),
            clock_slack=self.limits.clock_slack,
            max_version_jump=self.limits.max_version_jump,
            url=self.manifest_url,
            locked_digest=self.locked_digest,
        )
        cached = self.cache.get_metadata(self.id, MANIFEST_NAME)
        request = self._ask_server(cached, trust)
        early = None
        if request is not None and cached is not None:
            # Nothing else runs until the request is out (both threads would
            # compete for the interpreter lock); then the wait is ours to fill.
            request.wait_ready()
            self._adopt_stored_roots(trust)
            early = self._prepare(cached, trust, prepare)
        else:
            self._adopt_stored_roots(trust)
        body, fresh, _, offline_reason = self._manifest_bytes(cached, request)
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
            self._rotate(trust, up_to=rotation.up_to)
            if trust.root.version == before:
                raise
            candidate = trust.verify(
                body, recall=self.memo.load, sigstore_bundle=self._sigstore_bundle(fresh)
            )
        verdict = trust.accept(candidate)
        trusted = verdict.trusted
        if verdict.new_high_water is not None:
            self.state.set_high_water(self.id, verdict.new_high_water)
        if fresh is not None:
            try:
                self.cache.put_metadata(self.id, MANIFEST_NAME, fresh)
                if self._fetched_bundle is not None:
                    # The bundle that counted for this envelope, for the
                    # next process that holds no memo of it.
                    self.cache.put_metadata(self.id, SIGSTORE_BUNDLE_NAME, self._fetched_bundle)
            except OSError as exc:
                warnings.warn(f"secure_import: could not cache the manifest: {exc}", stacklevel=2)
        self.record(
            "manifest",
            outcome="offline" if offline_reason is not None else "ok",
            url=self.manifest_url,
            sha256=trusted.envelope_digest,
            manifest_version=trusted.manifest.version,
            key_id=trusted.key_id_text,
            message=None if offline_reason is None else f"server unreachable: {offline_reason}",
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
            self._adopt_pack(*early.pack)
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
                cached = self.cache.get_metadata(self.id, SIGSTORE_BUNDLE_NAME)
                if cached is not None or self.offline:
                    return None if cached is None else (cached, url)
            try:
                response = self.fetcher.get(url, cap=MAX_BUNDLE_BYTES, what="Sigstore bundle")
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

        With a cached envelope the request is conditional and runs in a worker
        thread, so that the caller can prepare the cached copy meanwhile.
        """
        if self.offline or (cached is not None and trust.matches_lock(cached)):
            return None

        try:
            fetcher = self.fetcher  # built here: setting up TLS needs the interpreter
        except TransportError as exc:
            failure = exc  # e.g. an unreadable CA bundle: a failed request, as ever

            def fail(ready: Callable[[], None]) -> Response:
                raise failure

            return _Request(fail, background=False)

        def ask(ready: Callable[[], None]) -> Response:
            # The publisher's pointer, not the server's ETag, says whether the
            # cached envelope is current (THREATS H5, H6).
            return ask_manifest(fetcher, self.url, cached=cached, limits=self.limits, waiting=ready)

        return _Request(ask, background=cached is not None)

    def _prepare(self, cached: bytes, trust: TrustState, top: str | None) -> _Prepared | None:
        """Work done on the cached envelope while the server is being asked.

        Verifies it exactly as it would be once the answer comes, and reads
        the authenticated bytecode pack of ``top`` for its entries.  Nothing
        here is trusted, cached, audited or run: if the server answers with a
        new manifest, all of it is dropped; if the answer leaves us with these
        bytes (304, or the server is unreachable), it is the same work the
        import would do next, done during the wait.  ``None`` if the cached
        copy does not verify: it is verified again, and refused with the
        proper error, only if it is still needed.
        """
        try:
            candidate = trust.verify(
                cached, recall=self.memo.load, sigstore_bundle=self._sigstore_bundle(None)
            )
        except SecureImportError:
            return None
        manifest = candidate.trusted.manifest
        pack = None
        if top is not None and top in manifest.provides and top not in self._ready_tops:
            entries = bundle_entries(manifest.files, top)
            codes = self.bytecode.load_pack([(e.sha256, self.url_for(e.path)) for e in entries])
            if codes is not None:
                pack = (top, entries, codes)
        return _Prepared(candidate, pack)

    def _manifest_bytes(
        self, cached: bytes | None, request: _Request | None
    ) -> tuple[bytes, bytes | None, str | None, TransportError | None]:
        """Untrusted manifest bytes to verify: ``(body, fresh, etag, offline_reason)``.

        ``fresh`` is set when the body came from the server (to be cached once
        it verifies); ``offline_reason`` when the server failed and the cached
        copy stands in (it is verified exactly like a fresh one).
        """
        if request is None and not self.offline:
            assert cached is not None
            return cached, None, None, None  # frozen and prefetched: no request at all
        try:
            if request is None:
                raise ConnectionFailedError(
                    "offline mode: the server is not contacted",
                    check="offline",
                    url=self.manifest_url,
                )
            response = request.result()
        except TransportError as exc:
            if cached is None:
                raise
            return cached, None, None, exc
        if response.status == 304 and cached is not None:
            return cached, None, None, None
        assert response.body is not None
        return response.body, response.body, response.etag, None

    def prefetch(self) -> int:
        """Verify and cache every file of every allowed top-level name now
        (deploy time), so later imports need no network; return the count.

        Raises:
            TrustError, TransportError: as for an import.
        """
        manifest = self.manifest
        count = 0
        with busy():
            for top in manifest.provides:
                if self.modules is not None and top not in self.modules:
                    continue
                self._verify_package(top)
                for path, entry in sorted(manifest.files.items()):
                    # Sources too: with authenticated bytecode the package ran
                    # without them, but get_source and tracebacks need them later.
                    if path.split("/", 1)[0] == top or path == f"{top}.py":
                        self._obtain(entry)
                count += sum(1 for p in manifest.files if p.split("/", 1)[0] in (top, f"{top}.py"))
            for dist in manifest.dist_info_dirs():
                for path, entry in sorted(manifest.files.items()):
                    if path.startswith(dist + "/"):
                        self._obtain(entry)
                        count += 1
        with self._lock:
            self._verified.clear()
            self._ready_tops.clear()
        return count

    # -- trust roots ----------------------------------------------------------

    def current_root(self) -> Root:
        """The pinned root moved forward through every stored, re-verified rotation."""
        trust = TrustState(
            self.pinned_root,
            high_water=None,
            now=self._clock(),
            clock_slack=self.limits.clock_slack,
            max_version_jump=self.limits.max_version_jump,
        )
        self._adopt_stored_roots(trust)
        return trust.root

    def _adopt_stored_roots(self, trust: TrustState) -> None:
        """Feed ``trust`` the rotations stored by earlier processes, in order.

        A stored chain that no longer verifies (edited state, or keys re-pinned
        by the user) is followed only up to the last good link.
        """
        for data in self.state.roots(self.id, after=trust.root.version):
            try:
                trust.update_root(data)
            except SecureImportError:
                break

    def _rotate(self, trust: TrustState, *, up_to: int | None) -> None:
        """Fetch roots ``trust.root.version + 1, ...`` (bounded), feed them to
        ``trust`` and store each one it accepts.

        Stops at ``up_to``, or at the first version the server does not have.

        Raises:
            RootRotationError: a step is not signed by both old and new keys,
                or skips a version; nothing after the last good step is kept.
        """
        for _ in range(self.limits.max_root_rotations):
            current = trust.root
            if up_to is not None and current.version >= up_to:
                break
            url = self.url_for(f"{ROOTS_DIR}/{current.version + 1}.json")
            try:
                response = self.fetcher.get(url, cap=self.limits.root_max_bytes, what="trust root")
            except HTTPStatusError as exc:
                if exc.got == 404:
                    break
                raise
            assert response.body is not None
            new = trust.update_root(response.body, url=url)
            self.state.save_root(self.id, new.version, response.body)
            self.record(
                "rotate",
                outcome="ok",
                url=url,
                manifest_version=new.version,
                key_id=",".join(sorted(k.key_id for k in new.keys)),
                message=f"trust root {current.version} -> {new.version} "
                f"(threshold {new.threshold} of {len(new.keys)} keys)",
            )

    # -- names --------------------------------------------------------------

    def may_provide(self, top_level: str) -> bool:
        """Whether this repository answers for ``top_level`` (no request if
        the user listed the allowed modules)."""
        if is_never_remote(top_level):
            return False
        if self.modules is not None:
            return top_level in self.modules
        return top_level in self.trusted_manifest(prepare=top_level).manifest.provides

    def find(self, fullname: str) -> tuple[FileEntry, bool]:
        """The manifest entry of a module, and whether it is a package.

        Raises:
            NotListedError: the manifest does not list it (no request made).
        """
        top = fullname.partition(".")[0]
        manifest = self.trusted_manifest(prepare=top).manifest
        hit = manifest.find_module(fullname) if top in manifest.provides else None
        if hit is None:
            raise NotListedError(
                f"{fullname} is not listed in the signed manifest of this repository",
                check="manifest-listing",
                url=self.url,
                name=fullname,
            )
        return hit

    @property
    def manifest(self) -> Manifest:
        return self.trusted_manifest().manifest

    # -- materialised packages ---------------------------------------------

    def materialises(self, top: str) -> bool:
        """Whether ``top`` is served with real file paths (materialise mode)."""
        mode = self.materialise
        return mode if isinstance(mode, bool) else top in mode

    def materialised_root(self, top: str) -> Path:
        """The directory holding ``top``'s verified files on disk, checked
        (and written or repaired) once per process; audited when written or
        replaced.

        Raises:
            MaterialiseError, UnsafePermissionsError: no verified tree.
            TrustError, TransportError: a file could not be verified.
        """
        with self._lock:
            root = self._trees.get(top)
            if root is not None:
                return root
            trusted = self.trusted_manifest(prepare=top)
            entries = package_entries(trusted.manifest.files, top)
            digest = trusted.envelope_digest
            outcome = self.materialised.ensure(digest, top, entries, self._verified_files)
            if outcome.action != "verified":
                replaced = outcome.action == "replaced"
                self.record(
                    "materialise",
                    outcome="replaced" if replaced else "ok",
                    module=top,
                    url=self.manifest_url,
                    sha256=digest,
                    manifest_version=trusted.manifest.version,
                    code="materialised-tampered" if replaced else None,
                    message=(
                        f"the materialised copy failed its check ({outcome.problem}); "
                        "deleted and written again from verified bytes"
                        if replaced
                        else f"{len(entries)} verified files written to {outcome.root}"
                    ),
                )
                if not replaced:
                    self.materialised.prune(keep=digest)
            self._trees[top] = outcome.root
            return outcome.root

    def _verified_files(self, entries: Sequence[FileEntry]) -> dict[str, bytes]:
        """Verified bytes of ``entries`` by path: cache (re-hashed), else fetched
        concurrently.  Raises the first verification or transport failure."""
        found: dict[str, bytes] = {}
        missing: list[FileEntry] = []
        for entry in entries:
            data = self._from_cache(entry)
            if data is None:
                missing.append(entry)
            else:
                found[entry.path] = data
        results = self._fetch_many(missing) if missing else []
        for entry, outcome in zip(missing, results, strict=True):
            if isinstance(outcome, SecureImportError):
                raise outcome
            found[entry.path] = outcome
        return found

    # -- bytes ------------------------------------------------------------

    def source(self, entry: FileEntry, *, keep: bool = False) -> bytes:
        """Verified bytes of a listed file.

        ``keep=False`` drops the in-memory copy once handed out: a later read
        (``get_source``) comes from the cache and is hashed again.

        Raises:
            TrustError, TransportError: nothing was cached or returned.
        """
        top = entry.path.split("/", 1)[0].removesuffix(".py")
        if entry.path.endswith(".py") and top not in self._ready_tops:
            self._verify_package(top)
        with self._lock:
            data = (
                self._verified.get(entry.sha256) if keep else self._verified.pop(entry.sha256, None)
            )
        if data is not None:
            return data
        return self._obtain(entry)

    def code(self, entry: FileEntry) -> CodeType:
        """The code object of a listed module, from verified bytes only.

        Raises:
            TrustError, TransportError: nothing was compiled or returned.
        """
        top = entry.path.split("/", 1)[0].removesuffix(".py")
        if top not in self._ready_tops:
            self._verify_package(top)
        with self._lock:
            code = self._code.pop((entry.sha256, entry.path), None)
        if code is not None:
            return code
        url = self.url_for(entry.path)
        code = self.bytecode.load(sha256=entry.sha256, url=url)
        if code is None:
            code = compile_verified(
                self.source(entry), sha256=entry.sha256, url=url, store=self.bytecode
            )
        return code

    def _verify_package(self, top: str) -> None:
        """Verify every module of a top-level package before any of it runs."""
        with self._lock:
            if top in self._ready_tops:
                return
            entries = bundle_entries(self.manifest.files, top)
            modules = [(e.sha256, self.url_for(e.path)) for e in entries]
            packed = self.bytecode.load_pack(modules)
            if packed is not None:
                self._adopt_pack(top, entries, packed)
                return
            codes: list[CodeType] = []
            missing: list[FileEntry] = []
            for entry in entries:
                code = self.bytecode.load(sha256=entry.sha256, url=self.url_for(entry.path))
                if code is not None:
                    # Bound by HMAC to this very sha256 and URL: as good as the
                    # verified source it was compiled from, without reading it.
                    self._code[(entry.sha256, entry.path)] = code
                    codes.append(code)
                    continue
                data = self._from_cache(entry)
                if data is None:
                    missing.append(entry)
                else:
                    self._verified[entry.sha256] = data
            if len(missing) > _BUNDLE_THRESHOLD:
                bundled = self._fetch_bundle(entries, top)
                if bundled is not None:
                    for entry in missing:
                        self._verified[entry.sha256] = bundled[entry.path]
                    missing = []
            if missing:
                results = self._fetch_many(missing)
                for entry, outcome in zip(missing, results, strict=True):
                    if isinstance(outcome, SecureImportError):
                        raise outcome
                    self._verified[entry.sha256] = outcome
            # Compile every verified source now, while little else is in memory,
            # and seal its code: code() then loads it as on a warm import, so
            # no source stays in memory and no compile runs while the package's
            # modules pile up.  A source that could not be sealed is kept (two
            # files may share content: it is dropped only if every one was sealed).
            unsealed: set[str] = set()
            for entry in entries:
                data = self._verified.get(entry.sha256)
                if data is not None and not self.bytecode.precompile(
                    data, sha256=entry.sha256, url=self.url_for(entry.path)
                ):
                    unsealed.add(entry.sha256)
            for entry in entries:
                if entry.sha256 not in unsealed:
                    self._verified.pop(entry.sha256, None)
            self._ready_tops.add(top)
        if len(codes) == len(entries):
            # Every module had authenticated bytecode (compiled by earlier
            # processes): seal them as one pack for the next process.  Not
            # done in the process that compiles, whose cold import already
            # holds every source and code object in memory.
            self.bytecode.save_pack(modules, codes)

    def _adopt_pack(self, top: str, entries: list[FileEntry], codes: list[CodeType]) -> None:
        """Use a bytecode pack for the modules of ``top``.  One sealed file bound
        to every (sha256, URL) of the package's entries in the trusted
        manifest: as good as the verified sources, without reading them."""
        with self._lock:
            for entry, code in zip(entries, codes, strict=True):
                self._code[(entry.sha256, entry.path)] = code
            self._ready_tops.add(top)

    def _fetch_bundle(self, entries: list[FileEntry], top: str) -> dict[str, bytes] | None:
        """All modules of ``top`` in one request, each verified and cached.

        ``None`` when the host has no bundle (404): the caller then fetches
        file by file.  A bundle whose pieces do not verify is refused like a
        tampered file; it is never a reason to trust anything less.
        """
        if self.offline:
            return None
        url = self.url_for(bundle_path(entries, top))
        total = sum(e.length for e in entries)
        try:
            with busy():
                response = self.fetcher.get(url, cap=total, what="package bundle")
        except HTTPStatusError as exc:
            if exc.got == 404:
                return None
            raise
        except TooLargeError as exc:
            raise LengthMismatchError(
                "the package bundle is longer than its signed files (stopped reading)",
                check="length",
                url=url,
                expected=f"{total} bytes",
                got=f"more than {total} bytes",
            ) from exc
        body = response.body or b""
        if len(body) != total:
            raise LengthMismatchError(
                "the package bundle is shorter than its signed files",
                check="length",
                url=url,
                expected=f"{total} bytes",
                got=f"{len(body)} bytes",
            )
        pieces: dict[str, bytes] = {}
        offset = 0
        for entry in entries:
            piece = body[offset : offset + entry.length]
            offset += entry.length
            verify_bytes(piece, entry, url=url)  # the URL actually fetched: the bundle
            pieces[entry.path] = piece
        del body, response  # only the verified pieces stay in memory
        for entry in entries:
            try:
                self.cache.put(entry.sha256, pieces[entry.path])
            except OSError as exc:
                warnings.warn(f"secure_import: could not cache {entry.path}: {exc}", stacklevel=2)
        return pieces

    def _fetch_many(self, entries: list[FileEntry]) -> list[bytes | SecureImportError]:
        def one(entry: FileEntry) -> bytes | SecureImportError:
            with busy():  # worker threads are ours too: no re-entry from lazy imports
                try:
                    return self._download(entry)
                except SecureImportError as exc:
                    return exc

        if len(entries) == 1 or self.limits.max_parallel <= 1:
            return [one(e) for e in entries]
        with ThreadPoolExecutor(max_workers=min(self.limits.max_parallel, len(entries))) as pool:
            return list(pool.map(one, entries))

    def _from_cache(self, entry: FileEntry) -> bytes | None:
        data, corrupt = self.cache.get(entry.sha256)
        if corrupt:
            self.record(
                "cache-corrupt",
                outcome="discarded",
                url=self.url_for(entry.path),
                sha256=entry.sha256,
                code="cache-corrupt",
                message="a cached file no longer matched its digest; deleted and fetched again",
            )
        if data is not None and len(data) != entry.length:
            return None
        return data

    def _obtain(self, entry: FileEntry) -> bytes:
        data = self._from_cache(entry)
        if data is not None:
            return data
        return self._download(entry)

    def _download(self, entry: FileEntry) -> bytes:
        url = self.url_for(entry.path)
        if self.offline:
            raise ConnectionFailedError(
                f"{entry.path} is not in the cache and this repository is offline",
                check="offline",
                url=url,
            )
        try:
            response = self.fetcher.get(url, cap=entry.length, what=entry.path)
        except TooLargeError as exc:
            raise LengthMismatchError(
                f"{entry.path} is longer than its signed length (stopped reading)",
                check="length",
                url=url,
                expected=f"{entry.length} bytes",
                got=f"more than {entry.length} bytes",
            ) from exc
        assert response.body is not None
        verify_bytes(response.body, entry, url=url)
        try:
            self.cache.put(entry.sha256, response.body)
        except OSError as exc:
            warnings.warn(f"secure_import: could not cache {url}: {exc}", stacklevel=2)
        return response.body
