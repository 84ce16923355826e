"""Package assembly: verified bytes and code for the files of one repository.

The repository (:mod:`secure_import.repository`) decides which manifest is
trusted; this module turns its entries into bytes and code objects, never
trusting anything but the signed sha256 and length:

- modules are verified in *units*: the members of one signed bundle (a
  whole small package, or one package directory of a large one; see
  :mod:`secure_import.verify.bundle`), a module no bundle carries on its own,
  or, for a manifest that lists no bundles (spec versions 1 and 2), the whole
  top-level package.  The first time a module of a unit is used, *all* the
  unit's modules are verified before any of them runs (one altered file stops
  its whole package directory): from a sealed bytecode pack bound to every
  (sha256, URL) of the unit, else per module from authenticated bytecode or
  the cache (re-hashed), and what is missing is fetched, as the unit's bundle
  when more than a couple of modules are cold, else
  concurrently file by file (a signed bundle is hash-checked before a capped
  decompression: :func:`~secure_import.verify.bundle.open_bundle`).  A unit
  nobody imports is never fetched, read or loaded;
- every fetched byte is verified (:func:`~secure_import.verify.hashes.verify_bytes`)
  before it is cached, compiled or returned; a body longer than its signed
  length is cut at the cap and refused as a length mismatch;
- verified sources are compiled and sealed while the package is verified, so
  no source stays in memory and no compile runs while its modules pile up;
- an offline repository never makes a request: a file missing from the cache
  is refused;
- the network work of one import (the manifest update, then the bundle, then
  the per-file fallback) shares one budget, ``Limits.import_deadline``, and
  the first failed fallback download cancels the others: no request starts
  after it, those in flight stop at their next read, and the import fails at
  once instead of waiting for every worker (THREATS T9).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from types import CodeType

from secure_import._guard import busy
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    CacheCorruptError,
    HTTPStatusError,
    LengthMismatchError,
    OfflineError,
    TooLargeError,
)
from secure_import.store.bytecode import BytecodeStore, compile_verified
from secure_import.store.cache import Cache
from secure_import.verify.bundle import (
    bundle_entries,
    top_of,
)
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.trust import TrustedManifest
from secure_import.verify.units import Unit, open_fetched, unit_bundle, unit_key, unit_of

# concurrent.futures, pathlib, the materialise store and the transport
# modules are imported where they are used: a warm import needs none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from secure_import.store.materialise import MaterialiseStore
    from secure_import.transport.base import Transport

__all__ = ["Assembler", "Pack", "Unit", "unit_key", "unit_of"]

#: Fetch a cold unit as one bundle when more than this many modules are missing
#: (fewer go file by file, concurrently).
_BUNDLE_THRESHOLD = 2

#: A bytecode pack read for a unit: its key, its entries, their code.
Pack = tuple[str, list[FileEntry], list[CodeType]]


class Assembler:
    """Verified bytes and code objects for the entries of one repository's
    trusted manifest, with what this process has verified so far."""

    def __init__(
        self,
        url: str,
        *,
        manifest: Callable[[], Manifest],
        transport: Callable[[], Transport],
        cache: Cache,
        bytecode: BytecodeStore,
        limits: Limits,
        offline: bool,
        record: Callable[..., None],
        lock: threading.RLock,
        materialised: Callable[[], MaterialiseStore],
    ) -> None:
        """``manifest``: the trusted manifest (the repository's; fetched and
        verified on first use).  ``transport``: the repository's transport,
        built on first use.  ``record``: appends an audit record about the
        repository.  ``lock``: the repository's lock, shared so that
        assembling a package and accepting a manifest never interleave.
        ``materialised``: the store of materialised packages (materialise
        mode), built on first use.
        """
        self.url = url
        self._manifest = manifest
        self._transport = transport
        self.cache = cache
        self.bytecode = bytecode
        self.limits = limits
        self.offline = offline
        self._record = record
        self._lock = lock
        self._verified: dict[str, bytes] = {}
        #: Code objects from authenticated bytecode, found while verifying a
        #: package and handed out once by :meth:`code`.
        self._code: dict[tuple[str, str], CodeType] = {}
        #: Keys of the units verified in this process, and the paths of their
        #: modules (the per-import check: no manifest lookup once verified).
        self._ready: set[str] = set()
        self._ready_paths: set[str] = set()
        self._materialised = materialised
        #: Top-level name -> its verified materialised root, once per process.
        self._trees: dict[str, Path] = {}
        #: sha256 -> the URL that served those verified bytes in this process
        #: (the origin or a mirror), for the audit log's load records.
        self._served: dict[str, str] = {}
        #: Top-level name -> seconds its import already spent on the manifest
        #: update (see :meth:`charge`).
        self._spent: dict[str, float] = {}

    def served_by(self, sha256: str) -> str | None:
        """The URL that served the verified bytes of ``sha256`` in this
        process, or ``None`` if they came from the local cache."""
        return self._served.get(sha256)

    def charge(self, top: str, seconds: float) -> None:
        """Count ``seconds`` of network work (the manifest update) against
        the import of ``top``: its package assembly then gets only the rest of
        ``Limits.import_deadline``.  A budget rather than a wall-clock
        deadline, so time the program spends between finding a module and
        loading it is never counted."""
        with self._lock:
            self._spent[top] = self._spent.get(top, 0.0) + seconds

    def _deadline(self, top: str | None) -> float:
        """The deadline (``time.monotonic``) of the network work still to do
        for importing ``top``: what is left of the import's budget."""
        with self._lock:
            spent = 0.0 if top is None else self._spent.pop(top, 0.0)
        return time.monotonic() + max(0.0, self.limits.import_deadline - spent)

    def url_for(self, path: str) -> str:
        return self.url + path

    def pack_for(self, manifest: Manifest, top: str | None) -> Pack | None:
        """The authenticated bytecode pack of the unit of ``top``'s own module
        for the entries of ``manifest`` (not necessarily accepted yet), if one
        is cached and the unit is not assembled already.  Nothing is adopted:
        see :meth:`adopt_pack`."""
        if top is None or top not in manifest.provides:
            return None
        found = manifest.find_module(top)
        if found is None or unit_key(manifest, found[0]) in self._ready:
            return None
        unit = unit_of(manifest, found[0])
        codes = self.bytecode.load_pack([(e.sha256, self.url_for(e.path)) for e in unit.entries])
        return None if codes is None else (unit.key, unit.entries, codes)

    def prefetch(self, modules: frozenset[str] | None) -> int:
        """Verify and cache every file of every allowed top-level name now
        (deploy time), so later imports need no network; return the count.

        Raises:
            TrustError, TransportError: as for an import.
        """
        manifest = self._manifest()
        count = 0
        with busy():
            for top in manifest.provides:
                if modules is not None and top not in modules:
                    continue
                self.verify_package(top)
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
            self._ready.clear()
            self._ready_paths.clear()
        return count

    def source(self, entry: FileEntry, *, keep: bool = False) -> bytes:
        """Verified bytes of a listed file.

        ``keep=False`` drops the in-memory copy once handed out: a later read
        (``get_source``) comes from the cache and is hashed again.

        Raises:
            TrustError, TransportError: nothing was cached or returned.
        """
        if entry.path.endswith(".py"):
            self._ensure(entry)
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
        self._ensure(entry)
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

    def verify_package(self, top: str) -> None:
        """Verify every unit of top-level package ``top`` (prefetch, cache warm)."""
        for entry in bundle_entries(self._manifest().files, top):
            self._ensure(entry)

    def _ensure(self, entry: FileEntry) -> None:
        """Verify the unit of module ``entry`` unless done in this process."""
        if entry.path in self._ready_paths:
            return
        manifest = self._manifest()
        if unit_key(manifest, entry) not in self._ready:
            self.verify_unit(unit_of(manifest, entry))

    def verify_unit(self, unit: Unit) -> None:
        """Verify every module of ``unit`` before any of them runs."""
        with self._lock:
            if unit.key in self._ready:
                return
            entries = unit.entries
            # One budget per top-level import, whichever unit it reaches.
            deadline = self._deadline(top_of(entries[0].path))
            modules = [(e.sha256, self.url_for(e.path)) for e in entries]
            packed = self.bytecode.load_pack(modules)
            if packed is not None:
                self.adopt_pack(unit.key, entries, packed)
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
                bundled = self._fetch_unit(unit, deadline)
                if bundled is not None:
                    for entry in missing:
                        self._verified[entry.sha256] = bundled[entry.path]
                    missing = []
            if missing:
                for entry, data in zip(missing, self._fetch_all(missing, deadline), strict=True):
                    self._verified[entry.sha256] = data
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
            self._ready.add(unit.key)
            self._ready_paths.update(e.path for e in entries)
        if len(codes) == len(entries):
            # Every module had authenticated bytecode (compiled by earlier
            # processes): seal them as one pack for the next process.  Not
            # done in the process that compiles, whose cold import already
            # holds every source and code object in memory.
            self.bytecode.save_pack(modules, codes)

    def adopt_pack(self, key: str, entries: list[FileEntry], codes: list[CodeType]) -> None:
        """Use a bytecode pack for the modules of the unit ``key``.  One sealed
        file bound to every (sha256, URL) of the unit's entries in the trusted
        manifest: as good as the verified sources, without reading them."""
        with self._lock:
            for entry, code in zip(entries, codes, strict=True):
                self._code[(entry.sha256, entry.path)] = code
            self._ready.add(key)
            self._ready_paths.update(e.path for e in entries)

    def _fetch_unit(self, unit: Unit, deadline: float) -> dict[str, bytes] | None:
        """All modules of ``unit`` in one request, each verified and cached.

        ``None`` when the unit has no bundle, or the host has none (404): the
        caller then fetches file by file.  A bundle that does not verify is
        refused like a tampered file; it is never a reason to trust anything
        less.
        """
        where = None if self.offline else unit_bundle(unit)
        if where is None:
            return None
        url, cap, what = self.url_for(where[0]), where[1], where[2]
        try:
            with busy():
                response = self._transport().get(url, cap=cap, what=what, deadline=deadline)
        except HTTPStatusError as exc:
            if exc.got == 404:
                return None
            raise
        except TooLargeError as exc:
            raise LengthMismatchError(
                f"the {what} is longer than its signed length (stopped reading)",
                check="length",
                url=exc.url or url,
                expected=f"{cap} bytes",
                got=f"more than {cap} bytes",
            ) from exc
        body = response.body or b""
        url = response.url  # the URL actually fetched: the origin's or a mirror's
        del response
        pieces = open_fetched(unit, body, self._manifest().files, url=url)
        del body  # only the verified pieces stay in memory
        for entry in unit.entries:
            self._served[entry.sha256] = url
        for entry in unit.entries:
            try:
                self.cache.put(entry.sha256, pieces[entry.path])
            except OSError as exc:
                warnings.warn(f"secure_import: could not cache {entry.path}: {exc}", stacklevel=2)
        return pieces

    def _fetch_all(self, entries: list[FileEntry], deadline: float) -> list[bytes]:
        """Verified bytes of ``entries``, in order, fetched concurrently under
        the import's ``deadline``; the first failure cancels the others and
        is raised at once (:func:`~secure_import.transport.parallel.fetch_all`).

        Raises:
            TrustError, TransportError: the first failure.
        """

        def one(entry: FileEntry, cancel: threading.Event) -> bytes:
            return self._download(entry, deadline=deadline, cancel=cancel)

        from secure_import.transport.parallel import fetch_all

        return fetch_all(entries, one, max_parallel=self.limits.max_parallel)

    def _from_cache(self, entry: FileEntry) -> bytes | None:
        data, corrupt = self.cache.get(entry.sha256)
        if corrupt:
            url = self.url_for(entry.path)
            self._record(
                "cache-corrupt",
                outcome="discarded",
                url=url,
                sha256=entry.sha256,
                code=CacheCorruptError.code,
                message="a cached file no longer matched its digest; discarded"
                + (" (offline: nothing can replace it)" if self.offline else " and fetched again"),
            )
            if self.offline:
                # Say what happened to the cache, not merely that a file is
                # missing: the remedy is a prefetch while online.
                raise CacheCorruptError(
                    f"the cached copy of {entry.path} no longer matched its signed digest "
                    "and was discarded; this repository is offline, so it cannot be fetched again",
                    check="cache-sha256",
                    url=url,
                    expected=entry.sha256,
                )
        if data is not None and len(data) != entry.length:
            return None
        return data

    def _obtain(self, entry: FileEntry) -> bytes:
        """Verified bytes of one file, from the cache or downloaded (outside a
        package assembly: a data file, a source read again later)."""
        data = self._from_cache(entry)
        if data is not None:
            return data
        return self._download(entry)

    def _download(
        self,
        entry: FileEntry,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes:
        url = self.url_for(entry.path)
        if self.offline:
            raise OfflineError(
                f"{entry.path} is not in the cache and this repository is offline "
                "(no connection attempted)",
                check="offline",
                url=url,
            )
        try:
            response = self._transport().get(
                url, cap=entry.length, what=entry.path, deadline=deadline, cancel=cancel
            )
        except TooLargeError as exc:
            raise LengthMismatchError(
                f"{entry.path} is longer than its signed length (stopped reading)",
                check="length",
                url=exc.url or url,
                expected=f"{entry.length} bytes",
                got=f"more than {entry.length} bytes",
            ) from exc
        assert response.body is not None
        verify_bytes(response.body, entry, url=response.url)
        self._served[entry.sha256] = response.url
        try:
            self.cache.put(entry.sha256, response.body)
        except OSError as exc:
            warnings.warn(f"secure_import: could not cache {url}: {exc}", stacklevel=2)
        return response.body

    # -- materialised packages ---------------------------------------------

    def materialised_root(self, top: str, trusted: TrustedManifest) -> Path:
        """The directory holding ``top``'s verified files on disk, checked
        (and written or repaired) once per process; audited when written or
        replaced.  ``trusted``: the repository's accepted manifest.

        Raises:
            MaterialiseError, UnsafePermissionsError: no verified tree.
            TrustError, TransportError: a file could not be verified.
        """
        with self._lock:
            root = self._trees.get(top)
            if root is not None:
                return root
            from secure_import.store.materialise import package_entries

            entries = package_entries(trusted.manifest.files, top)
            digest = trusted.envelope_digest
            outcome = self._materialised().ensure(digest, top, entries, self._verified_files)
            if outcome.action != "verified":
                replaced = outcome.action == "replaced"
                self._record(
                    "materialise",
                    outcome="replaced" if replaced else "ok",
                    module=top,
                    url=self.url + MANIFEST_NAME,
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
                    self._materialised().prune(keep=digest)
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
        if missing:
            fetched = self._fetch_all(missing, self._deadline(None))
            for entry, data in zip(missing, fetched, strict=True):
                found[entry.path] = data
        return found
