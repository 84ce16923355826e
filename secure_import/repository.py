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
    ConfigError,
    ConnectionFailedError,
    NotListedError,
    SecureImportError,
    TransportError,
)
from secure_import.pinning import KeySpec, PublisherSpec, TrustedRootSpec, pinned_root
from secure_import.store.audit import AuditLog
from secure_import.store.bytecode import BytecodeStore
from secure_import.store.cache import Cache
from secure_import.store.lock import LockEntry, read_lock
from secure_import.store.memo import ManifestMemo
from secure_import.store.paths import Paths
from secure_import.store.state import StateStore, repo_id
from secure_import.transport import warmup
from secure_import.transport.mirrorpolicy import DEFAULT_FALLBACK, check_mirrors, served_host
from secure_import.update import ManifestUpdater
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.names import (
    check_allowed_modules,
    check_materialise,
    is_never_remote,
    normalize_url,
)
from secure_import.verify.root import Root
from secure_import.verify.tree import is_listed_dir
from secure_import.verify.trust import TrustedManifest

# The network (httpx, ssl, the transport modules), pathlib and the Sigstore
# modules are imported where they are used: a warm offline process needs none
# of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from secure_import.store.materialise import MaterialiseStore
    from secure_import.transport.base import Transport
    from secure_import.transport.https import TransportOptions
    from secure_import.transport.s3 import S3Location

__all__ = ["MANIFEST_NAME", "KeySpec", "Listing", "Repository"]

#: After a failed manifest fetch, imports fail fast with the same error for
#: this many seconds instead of hitting the server for every unknown name.
_RETRY_AFTER = 30.0


class Listing(tuple[FileEntry | None, bool, str | None]):
    """What a name is in a repository's signed manifest (:meth:`Repository.lookup`).

    A tuple subclass written out rather than a ``typing.NamedTuple``, which
    would import ``typing`` into every process (see :class:`FileEntry`).
    """

    __slots__ = ()

    def __new__(cls, entry: FileEntry | None, is_package: bool, data_dir: str | None) -> Listing:
        return tuple.__new__(cls, (entry, is_package, data_dir))

    def __getnewargs__(self) -> tuple[FileEntry | None, bool, str | None]:
        return (self[0], self[1], self[2])

    @property
    def entry(self) -> FileEntry | None:
        """The module's file; ``None`` for a data-only directory."""
        return self[0]

    @property
    def is_package(self) -> bool:
        return self[1]

    @property
    def data_dir(self) -> str | None:
        """The repository-relative directory of a data-only directory, else ``None``."""
        return self[2]

    def __repr__(self) -> str:
        return f"Listing(entry={self[0]!r}, is_package={self[1]!r}, data_dir={self[2]!r})"


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
        mirrors: Sequence[str] = (),
        fallback: str = DEFAULT_FALLBACK,
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
        #: Mirrors of this repository (https URLs, asked after ``url`` by the
        #: ``fallback`` policy; see :mod:`secure_import.transport.mirrors`).
        #: Everything they serve is verified exactly like the origin's bytes.
        self.mirrors, self.fallback = check_mirrors(self.url, mirrors, fallback)
        self.modules = check_allowed_modules(modules)
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
        #: :attr:`ca_bundle` as a string (what the transports and child
        #: descriptions use; no :mod:`pathlib` on the warm path).
        self.ca_file = None if ca_bundle is None else os.fspath(ca_bundle)
        #: Credentials, client certificate, trust store (private repositories).
        self.transport = transport
        self.limits = limits or Limits()
        self.paths = paths or Paths.default()
        readonly = self.paths.cache_readonly
        self.cache = (
            Cache(self.paths.cache, readonly=readonly, on_unwritable=self._cache_unwritable)
            if cache is None
            else cache
        )
        self.state = StateStore(self.paths.state) if state is None else state
        self.audit = (
            AuditLog(self.paths.audit_log_file, witness=self.paths.witness_file)
            if audit is None
            else audit
        )
        self.bytecode = (
            BytecodeStore(self.paths.cache, self.paths.state, readonly=readonly)
            if bytecode is None
            else bytecode
        )
        self.memo = (
            ManifestMemo(self.paths.cache, self.paths.state, owner=self.id, readonly=readonly)
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
        #: :attr:`lock_file` as a string.
        self.lock_path = None if lock is None else os.fspath(lock)
        if lock is not None:
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
            # The first import will ask the server (at least a conditional
            # request): start importing the network stack now, in the
            # background, so it overlaps with the application's own start-up
            # instead of running inside the import hook.  Offline and frozen
            # repositories may never need it.
            if self._s3 is None:
                warmup.start()
            else:
                from secure_import.transport.s3 import import_obstore

                import_obstore()  # also: a missing 's3' extra is reported here

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
        if self.ca_file is None:
            return None
        from pathlib import Path

        return Path(self.ca_file)

    @property
    def lock_file(self) -> Path | None:
        """The lock file of frozen mode (repositories reached through
        dependency declarations are held to it too)."""
        if self.lock_path is None:
            return None
        from pathlib import Path

        return Path(self.lock_path)

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
        if not warmup.wait():
            raise ConnectionFailedError(
                "the network stack did not finish loading in the background",
                check="network-stack",
                url=self.url,
            )
        from secure_import.transport.https import Fetcher, TransportOptions
        from secure_import.transport.mirrors import MirrorSet, SourceClient

        origin = Fetcher(
            self.url, limits=self.limits, ca_bundle=self.ca_bundle, transport=self.transport
        )
        if not self.mirrors:
            return origin
        # Each mirror is its own client, bound to its own origin (redirects
        # stay there), verified against the same CA choice, never sent the
        # credential or the client certificate.
        sources: list[tuple[str, SourceClient]] = [(self.url, origin)]
        options = (self.transport or TransportOptions()).for_mirror()
        for mirror in self.mirrors:
            sources.append(
                (
                    mirror,
                    Fetcher(
                        mirror, limits=self.limits, ca_bundle=self.ca_bundle, transport=options
                    ),
                )
            )
        return MirrorSet(
            self.url, sources, fallback=self.fallback, failover_after=self.limits.failover_after
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

    def _cache_unwritable(self, reason: str) -> None:
        """The cache could not be written (a read-only image layer): not an
        import failure, the verified bytes are used from memory; audited
        once per process (raises AuditWriteError)."""
        self.record(
            "cache-readonly",
            outcome="skipped",
            url=self.url,
            code="cache-readonly",
            message=f"the cache {self.paths.cache_dir} is not written ({reason}); "
            "verified bytes are used from memory, nothing unverified is trusted",
        )

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
        through a dependency edge (named in the record).  The record names the
        host that served the module's bytes in this process (the origin or a
        mirror), or ``"cache"`` when they came from the verified cache.
        """
        served = self.assembly.served_by(sha256)
        host = "cache" if served is None else served_host(served)
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
                host=host,
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
            host=host,
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
        from the cache (see :class:`~secure_import.update.ManifestUpdater`), so
        a 304 costs one round trip and little else.

        Raises:
            TrustError, TransportError, LocalStateError: nothing was trusted.
        """
        if self._trusted is None and not warmup.wait():
            # The update imports modules (the transport, the signature and
            # Sigstore code) inside the import hook, which holds the global
            # import lock: never while the warm-up thread may be importing
            # the same ones (see :mod:`secure_import.transport.warmup`).
            raise ConnectionFailedError(
                "the network stack did not finish loading in the background",
                check="network-stack",
                url=self.url,
            )
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
