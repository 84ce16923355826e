"""The orchestrator: fetch -> verify -> cache -> audit, for one repository.

This is the only module that mixes network, disk and trust.  The decisions
themselves are made by pure code: the order of the trust steps by
:class:`~secure_import.verify.trustset.TrustState` (roots, then the manifest,
then acceptance), the checks by :mod:`.envelope`, :mod:`.manifest` and
:mod:`.trust`; this module feeds them bytes and acts on the verdicts.

Order of work for a module (the finder calls these):

1. :meth:`Repository.trusted_manifest` — once per process: the manifest
   update of :class:`~secure_import.update.ManifestUpdater` (conditional
   request, rotation walk, offline fallback, high-water mark, cache, memo,
   audit) around the pure trust state, which verifies the envelope against
   the newest root *before parsing* and checks expiry and the high-water mark.
2. :meth:`Repository.lookup` — the one question the finder asks: what a name
   is in the trusted manifest (module, package, data-only directory, or
   nothing); a name that is not listed is refused without any request.
3. :meth:`Repository.code` and :meth:`Repository.source` — verified code and
   bytes, assembled by :class:`~secure_import.assembly.Assembler`: the first
   time a top-level package is used, *all* its modules are verified (from
   authenticated bytecode, the re-hashed cache, or fetched), so one altered
   file stops the whole package before any of it runs.

No byte that failed a check is returned, cached or executed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import CodeType

from secure_import.assembly import Assembler
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    NotListedError,
    SecureImportError,
    TransportError,
)
from secure_import.pinning import KeySpec, PublisherSpec, TrustedRootSpec, pinned_root
from secure_import.store.audit import AuditLog
from secure_import.store.bytecode import BytecodeStore
from secure_import.store.cache import Cache
from secure_import.store.lock import LockEntry, locked_digest
from secure_import.store.memo import ManifestMemo
from secure_import.store.paths import Paths
from secure_import.store.state import StateStore, repo_id
from secure_import.store.stores import default_stores
from secure_import.store.trail import AuditTrail
from secure_import.transport.connect import (
    connect_https,
    connect_s3,
    repository_location,
    start_network,
)
from secure_import.transport.mirrorpolicy import DEFAULT_FALLBACK, check_mirrors, served_host
from secure_import.update import ManifestUpdater
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.names import (
    check_allowed_modules,
    check_follow_level,
    check_materialise,
    is_never_remote,
)
from secure_import.verify.root import Root
from secure_import.verify.tree import Listing, is_listed_dir
from secure_import.verify.trust import TrustedManifest, load_verifier

# The network (httpx, ssl, the transport modules), pathlib and the Sigstore
# modules are imported where they are used: a warm offline process needs none
# of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from secure_import.store.materialise import MaterialiseStore
    from secure_import.transport.base import Transport
    from secure_import.transport.https import TransportOptions

__all__ = ["MANIFEST_NAME", "KeySpec", "Listing", "Repository"]

#: After a failed manifest fetch, imports fail fast with the same error for
#: this many seconds instead of hitting the server for every unknown name.
_RETRY_AFTER = 30.0


def _as_path(name: str | None) -> Path | None:
    if name is None:
        return None
    from pathlib import Path

    return Path(name)


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
        mirrors: Sequence[str] = (),
        fallback: str = DEFAULT_FALLBACK,
    ) -> None:
        # Refuses http:// (and a malformed s3:// URL) before any request;
        # one spelling per repository.
        self.url, self._s3 = repository_location(url, transport, s3_endpoint, s3_region)
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        #: Mirrors of this repository (https URLs, asked after ``url`` by the
        #: ``fallback`` policy; see :mod:`secure_import.transport.mirrors`).
        #: Everything they serve is verified exactly like the origin's bytes.
        self.mirrors, self.fallback = check_mirrors(self.url, mirrors, fallback)
        self.modules = check_allowed_modules(modules)
        #: Whether the signed dependency declarations of this repository are
        #: followed to repositories the consumer did not pin (a widening):
        #: ``"no"``, ``"direct"`` (one level) or ``"transitive"``.
        self.trust_dependencies = check_follow_level(trust_dependencies)
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
        #: :attr:`ca_bundle` as a string (what the transports and child
        #: descriptions use; no :mod:`pathlib` on the warm path).
        self.ca_file = None if ca_bundle is None else os.fspath(ca_bundle)
        #: Credentials, client certificate, trust store (private repositories).
        self.transport = transport
        self.limits = limits or Limits()
        self.paths = paths or Paths.default()
        #: The audit records about this repository (see :class:`AuditTrail`).
        self.trail = AuditTrail(lambda: self.audit, self.url, self.paths.cache)
        stores = default_stores(
            self.paths, self.id, self._cache_unwritable, cache, state, audit, bytecode, memo
        )
        self.cache, self.state, self.audit, self.bytecode, self.memo = stores
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Never contact the server: the cached manifest (verified exactly as a
        #: fresh one, so it must be unexpired and not below the high-water mark)
        #: and cached files only.
        self.offline = offline
        #: Frozen mode: the sha256 of the only manifest envelope accepted.
        self.locked_digest: str | None = None
        #: :attr:`lock_file` as a string.
        self.lock_path = None if lock is None else os.fspath(lock)
        if lock is not None:
            self.locked_digest = locked_digest(lock, self.url)
        self._connect = connect or (self._connect_https if self._s3 is None else self._connect_s3)
        self._fetcher: Transport | None = None
        self._lock = threading.RLock()
        self._trusted: TrustedManifest | None = None
        self._failure: tuple[SecureImportError, float] | None = None
        #: Materialise mode: ``True`` for every package of this repository, or
        #: the top-level names whose verified files are written to a private
        #: directory so ``__file__`` is a real path (see :mod:`.store.materialise`).
        self.materialise = check_materialise(materialise)
        self._materialised: MaterialiseStore | None = None
        #: Verified bytes and code for the entries of the trusted manifest.
        self.assembly = Assembler(
            self.url,
            manifest=lambda: self.manifest,
            transport=lambda: self.fetcher,
            cache=self.cache,
            bytecode=self.bytecode,
            limits=self.limits,
            offline=self.offline,
            record=self.record,
            lock=self._lock,
            materialised=lambda: self.materialised,
        )
        #: The I/O of the manifest update around the pure trust state.
        self.updater = ManifestUpdater(
            self.url,
            repo_id=self.id,
            pinned_root=self.pinned_root,
            limits=self.limits,
            clock=self._clock,
            offline=self.offline,
            locked_digest=self.locked_digest,
            cache=self.cache,
            state=self.state,
            memo=self.memo,
            assembly=self.assembly,
            transport=lambda: self.fetcher,
            record=self.record,
        )
        if connect is None and not self.offline and self.locked_digest is None:
            # The first import will ask the server: load the network stack now
            # here, not inside the import hook.
            # Offline and frozen repositories may never need it.
            start_network(s3=self._s3 is not None)
        if not self.offline and not self.cache.has_metadata(self.id, MANIFEST_NAME):
            # No cached manifest: the first import verifies a signature, so
            # the signature code is loaded here too, not inside it.
            load_verifier()

    # -- plumbing ---------------------------------------------------------

    @property
    def materialised(self) -> MaterialiseStore:
        """Packages materialised on disk (built on first use: the module, with
        pathlib and dataclasses, is not on the warm import path)."""
        if self._materialised is None:
            from secure_import.store.materialise import MaterialiseStore

            self._materialised = MaterialiseStore(
                self.paths.cache_dir, self.id, readonly=self.paths.cache_readonly
            )
        return self._materialised

    @property
    def ca_bundle(self) -> Path | None:
        """The CA bundle that alone is trusted for this repository's TLS, if any."""
        return _as_path(self.ca_file)

    @property
    def lock_file(self) -> Path | None:
        """The lock file of frozen mode (repositories reached through
        dependency declarations are held to it too)."""
        return _as_path(self.lock_path)

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
        return connect_https(
            self.url,
            limits=self.limits,
            ca_bundle=self.ca_bundle,
            transport=self.transport,
            mirrors=self.mirrors,
            fallback=self.fallback,
        )

    def _connect_s3(self) -> Transport:
        """Object storage through obstore: the same verification, another transport."""
        assert self._s3 is not None
        return connect_s3(
            self._s3,
            endpoint=self.s3_endpoint,
            region=self.s3_region,
            ca_bundle=self.ca_bundle,
            limits=self.limits,
        )

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
        self.trail.record(event, outcome=outcome, **fields)

    def _cache_unwritable(self, reason: str) -> None:
        self.trail.cache_unwritable(reason)

    def record_load(
        self,
        *,
        module: str,
        url: str,
        sha256: str,
        trusted: TrustedManifest,
        via: str | None = None,
    ) -> None:
        """Audit one module about to run (raises AuditWriteError), naming the
        host that served its bytes in this process (the origin or a mirror),
        or ``"cache"``; ``via``: the dependency declaration that allowed it."""
        served = self.assembly.served_by(sha256)
        host = "cache" if served is None else served_host(served)
        self.trail.load(module=module, url=url, sha256=sha256, trusted=trusted, host=host, via=via)

    def record_refusal(self, exc: SecureImportError, *, module: str | None) -> None:
        self.trail.refusal(exc, module=module)

    # -- manifest ---------------------------------------------------------

    def trusted_manifest(self, *, prepare: str | None = None) -> TrustedManifest:
        """The verified manifest, fetched and checked once per process.

        ``prepare``: the top-level name about to be imported.  While the
        freshness request is in flight, its authenticated bytecode pack is read
        from the cache (see :class:`~secure_import.update.ManifestUpdater`), so
        a 304 costs one round trip and little else.

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
            started = time.monotonic()
            try:
                # The import's budget starts here; what the update spends is
                # charged to the package assembly that follows (THREATS T9).
                trusted = self.updater.load(prepare, deadline=started + self.limits.import_deadline)
            except SecureImportError as exc:
                if isinstance(exc, TransportError):
                    self._failure = (exc, time.monotonic())
                raise
            self._trusted = trusted
            self._failure = None
            if prepare is not None:
                self.assembly.charge(prepare, time.monotonic() - started)
            return trusted

    def current_root(self) -> Root:
        """The pinned root moved forward through every stored, re-verified rotation."""
        return self.updater.current_root()

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
            raise self._not_listed(fullname)
        return hit

    def _not_listed(self, fullname: str) -> NotListedError:
        return NotListedError(
            f"{fullname} is not listed in the signed manifest of this repository",
            check="manifest-listing",
            url=self.url,
            name=fullname,
        )

    def lookup(self, name: str) -> Listing | None:
        """What ``name`` (a dotted module name) is in this repository: the one
        question the finder asks.

        A module or package (its entry), a data-only directory (files listed,
        no ``__init__.py``: an empty package whose only use is resources), or
        ``None`` when the manifest lists nothing under that name.  Loads the
        trusted manifest on first use (preparing ``name``'s top-level package).

        Raises:
            NotListedError: listed, but under a top-level name the manifest
                does not provide (no request made).
            TrustError, TransportError, LocalStateError: no manifest is trusted.
        """
        top = name.partition(".")[0]
        manifest = self.trusted_manifest(prepare=top).manifest
        hit = manifest.find_module(name)
        if hit is None:
            directory = name.replace(".", "/")
            if is_listed_dir(manifest, directory):
                return Listing(None, True, directory)
            return None
        if top not in manifest.provides:
            raise self._not_listed(name)
        entry, is_package = hit
        return Listing(entry, is_package, None)

    @property
    def manifest(self) -> Manifest:
        return self.trusted_manifest().manifest

    def lock_entry(self) -> LockEntry:
        """The pin of this repository's manifest for a lock file (frozen mode),
        fetched and verified now.

        Raises:
            TrustError, TransportError, LocalStateError: nothing was trusted.
        """
        trusted = self.trusted_manifest()
        return LockEntry(self.url, trusted.envelope_digest, trusted.manifest.version)

    # -- materialised packages ---------------------------------------------

    def materialises(self, top: str) -> bool:
        """Whether ``top`` is served with real file paths (materialise mode)."""
        mode = self.materialise
        return mode if isinstance(mode, bool) else top in mode

    def materialised_root(self, top: str) -> Path:
        """The directory holding ``top``'s verified files on disk (see
        :meth:`Assembler.materialised_root`).

        Raises:
            MaterialiseError, UnsafePermissionsError: no verified tree.
            TrustError, TransportError: a file could not be verified.
        """
        return self.assembly.materialised_root(top, self.trusted_manifest(prepare=top))

    # -- bytes ------------------------------------------------------------

    def source(self, entry: FileEntry, *, keep: bool = False) -> bytes:
        """Verified bytes of a listed file (see :meth:`Assembler.source`).

        Raises:
            TrustError, TransportError: nothing was cached or returned.
        """
        return self.assembly.source(entry, keep=keep)

    def code(self, entry: FileEntry) -> CodeType:
        """The code object of a listed module, from verified bytes only.

        Raises:
            TrustError, TransportError: nothing was compiled or returned.
        """
        return self.assembly.code(entry)

    def prefetch(self) -> int:
        """Verify and cache every file of every allowed top-level name now
        (deploy time), so later imports need no network; return the count.

        Raises:
            TrustError, TransportError: as for an import.
        """
        return self.assembly.prefetch(self.modules)
