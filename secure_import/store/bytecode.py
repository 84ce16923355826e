"""Compiling verified source into code objects, with an authenticated bytecode cache.

:func:`compile_verified` is the single place where verified bytes become code.
With a :class:`BytecodeStore` it reuses a code object compiled earlier from the
*same verified bytes*, which saves the compile on a warm import; without one it
simply compiles.

Files are sealed (:mod:`secure_import.store.sealed`): authenticated with a key kept
in the state directory and checked before ``marshal`` sees a byte.  That module
explains who can write what; this one adds what a code object depends on.

Invariants:

- the binding of a module's file is (this format, source sha256, https URL,
  importlib magic number, ``sys.implementation.cache_tag``, optimisation
  level), so a genuine file for other source (stale), another URL, another
  interpreter or another ``-O`` level fails the HMAC even when copied under
  this file's name; the binding also names the file, so such files do not
  evict each other;
- a *package pack* holds the code objects of every module of one top-level
  package in one sealed file, bound to the whole list of (source sha256, URL)
  pairs the signed manifest gives for that package, plus the interpreter: one
  read, one HMAC and one ``marshal.loads`` replace one of each per module on a
  warm import.  A pack is only written from code objects that were themselves
  compiled from verified source or authenticated in this process, and it is
  used all or nothing: any change to any module of the package is another
  binding, so an old pack can never supply an old module;
- the process that verifies a package's sources compiles every one of them
  at once (:meth:`BytecodeStore.precompile`), seals the code and drops the
  source, and its imports then load the sealed code like a warm import: the
  compile's transient memory is spent before the package's modules pile up,
  and no code object keeps the bytes copy ``marshal.dumps`` caches on it.
  Compiling runs no code; a module that does not compile is left to its own
  import, which compiles the kept source and raises as a local import would;
- a code object is used only if it is a code object whose ``co_filename`` is
  its https URL (tracebacks, ``inspect`` and ``linecache`` rely on it);
- a file that fails any check is deleted and the verified source is compiled
  again.  A bad, missing or unwritable file, key or directory never raises and
  never blocks an import: the fallback is the plain compile, which is always
  safe because the caller passes only verified source.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from collections.abc import Sequence
from importlib._bootstrap_external import MAGIC_NUMBER
from types import CodeType

from secure_import.store.sealed import FORMAT, KEY_NAME, SealedStore, binding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "BYTECODE_DIR",
    "FORMAT",
    "KEY_NAME",
    "BytecodeStore",
    "compile_verified",
    "module_file_name",
    "pack_prefix",
]

#: Folder of bytecode files inside the cache directory.
BYTECODE_DIR = "bytecode"
_PACK_FORMAT = b"SIBP\x01"
_PACK_PREFIX = "pack-"


class BytecodeStore:
    """Authenticated code objects for verified sources, under the cache directory.

    One instance per repository is enough (the files are keyed by content, so
    several repositories may share a directory).  Thread-safe; never raises
    from :meth:`load`, :meth:`save`, :meth:`load_pack` or :meth:`save_pack`.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        readonly: bool = False,
    ) -> None:
        self._cache_dir = os.fspath(cache_dir)
        self._state_dir = os.fspath(state_dir)
        #: A read-only cache: seals are read, never written or deleted.
        self.readonly = readonly
        tag = sys.implementation.cache_tag
        # importlib.util.MAGIC_NUMBER, without importing importlib.util.
        self.magic = MAGIC_NUMBER
        self.optimize = sys.flags.optimize
        #: ``None`` disables the store (as importlib does without a cache tag).
        self.tag = tag
        self._sealed: SealedStore | None = None
        #: A seal failed (cache not writable): :meth:`precompile` stops trying.
        self._unwritable = readonly
        self.directory = (
            None
            if tag is None
            else os.path.join(
                self._cache_dir, BYTECODE_DIR, f"{tag}-{self.magic.hex()}-opt{self.optimize}"
            )
        )

    @property
    def cache_dir(self) -> Path:
        from pathlib import Path

        return Path(self._cache_dir)

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(self._state_dir)

    @property
    def directory(self) -> Path | None:
        """The folder for this interpreter's files (``None``: store disabled)."""
        return None if self._sealed is None else self._sealed.directory

    @directory.setter
    def directory(self, value: str | os.PathLike[str] | None) -> None:
        self._sealed = (
            None
            if value is None
            else SealedStore(
                value, cache_dir=self._cache_dir, state_dir=self._state_dir, readonly=self.readonly
            )
        )

    # -- one module -----------------------------------------------------------

    def path_for(self, *, sha256: str, url: str) -> Path | None:
        """Where the code for ``(sha256, url)`` is kept in this interpreter."""
        if self.directory is None:
            return None
        return self.directory / _name(sha256, url)

    def load(self, *, sha256: str, url: str) -> CodeType | None:
        """The cached code for this verified source, or ``None``.

        A file that is present but fails a check is deleted.
        """
        if self._sealed is None:
            return None
        name = _name(sha256, url)
        body = self._sealed.open(name, self._binding(sha256, url))
        if body is None:
            return None
        code = _unmarshal(body)
        if not isinstance(code, CodeType) or code.co_filename != url:
            self._sealed.discard(name)
            return None
        return code

    def save(self, code: CodeType, *, sha256: str, url: str) -> None:
        """Store ``code`` (compiled from the verified source ``sha256`` at ``url``)."""
        if self._sealed is None or code.co_filename != url:
            return
        try:
            body = marshal.dumps(code)
        except ValueError:
            return
        self._sealed.seal(_name(sha256, url), self._binding(sha256, url), body)

    def precompile(self, source: bytes, *, sha256: str, url: str) -> bool:
        """Compile ``source`` (already verified to hash to ``sha256``) and seal
        the code, keeping nothing in memory: :meth:`load` returns it later.
        False if it was not sealed (no store, unwritable, or the source does not
        compile: then the import compiles it, and raises, as without this).
        """
        if self._sealed is None or self._unwritable:
            return False
        try:
            body = marshal.dumps(compile(source, url, "exec", dont_inherit=True))
        except Exception:  # noqa: BLE001 - SyntaxError, ValueError, RecursionError...
            # Reported where it belongs: by the import of that module, which
            # compiles the kept source again and raises as a local import would.
            return False
        if not self._sealed.seal(_name(sha256, url), self._binding(sha256, url), body):
            self._unwritable = True  # do not compile every module twice
            return False
        return True

    # -- one package ------------------------------------------------------------

    def load_pack(self, modules: Sequence[tuple[str, str]]) -> list[CodeType] | None:
        """Code objects for every ``(sha256, url)`` in ``modules``, in order, from
        one sealed pack; ``None`` unless the pack matches all of them exactly."""
        if self._sealed is None or not modules:
            return None
        bound = self._pack_binding(modules)
        name = self._pack_name(modules, bound)
        body = self._sealed.open(name, bound)
        if body is None:
            return None
        codes = _unmarshal(body)
        if (
            not isinstance(codes, tuple)
            or len(codes) != len(modules)
            or not all(
                isinstance(code, CodeType) and code.co_filename == url
                for code, (_, url) in zip(codes, modules, strict=True)
            )
        ):
            self._sealed.discard(name)
            return None
        return list(codes)

    def save_pack(self, modules: Sequence[tuple[str, str]], codes: Sequence[CodeType]) -> None:
        """Seal ``codes`` (one per ``(sha256, url)`` of ``modules``, each compiled
        from that verified source) as one pack, replacing older packs of the
        same package."""
        if (
            self._sealed is None
            or not modules
            or len(codes) != len(modules)
            or any(code.co_filename != url for code, (_, url) in zip(codes, modules, strict=True))
        ):
            return
        try:
            body = marshal.dumps(tuple(codes))
        except ValueError:
            return
        bound = self._pack_binding(modules)
        name = self._pack_name(modules, bound)
        if self._sealed.seal(name, bound, body):
            prefix = name.rsplit("-", 1)[0] + "-"
            for old in self._sealed.names(prefix):
                if old != name:
                    self._sealed.discard(old)

    # -- inspection (cache verify) ----------------------------------------------

    def name_for(self, *, sha256: str, url: str) -> str:
        """File name of the code for ``(sha256, url)`` in :attr:`directory`."""
        return _name(sha256, url)

    def check(self, *, sha256: str, url: str) -> str | None:
        """What is wrong with the sealed code for this verified source
        (``"missing"`` if none), or ``None``; deletes nothing."""
        if self._sealed is None:
            return "missing"
        body, problem = self._sealed.check(_name(sha256, url), self._binding(sha256, url))
        if body is None:
            return problem
        code = _unmarshal(body)
        if not isinstance(code, CodeType) or code.co_filename != url:
            return "sealed body is not code compiled for this URL"
        return None

    def pack_name(self, modules: Sequence[tuple[str, str]]) -> str | None:
        """File name of the pack for ``modules`` (``None``: store disabled)."""
        if self._sealed is None or not modules:
            return None
        return self._pack_name(modules, self._pack_binding(modules))

    def check_pack(self, modules: Sequence[tuple[str, str]]) -> str | None:
        """What is wrong with the pack for ``modules`` (``"missing"`` if none),
        or ``None``; deletes nothing."""
        if self._sealed is None or not modules:
            return "missing"
        bound = self._pack_binding(modules)
        body, problem = self._sealed.check(self._pack_name(modules, bound), bound)
        if body is None:
            return problem
        codes = _unmarshal(body)
        if not isinstance(codes, tuple) or len(codes) != len(modules):
            return "sealed pack does not hold one code object per module"
        return None

    # -- internals -------------------------------------------------------------

    def _interpreter(self) -> list[bytes]:
        assert self.tag is not None
        return [self.magic, self.tag.encode(), str(self.optimize).encode()]

    def _binding(self, sha256: str, url: str) -> bytes:
        return binding(
            [FORMAT, *self._interpreter(), sha256.encode(), url.encode("utf-8", "surrogatepass")]
        )

    def _pack_binding(self, modules: Sequence[tuple[str, str]]) -> bytes:
        parts = [_PACK_FORMAT, *self._interpreter(), str(len(modules)).encode()]
        for sha256, url in modules:
            parts.append(sha256.encode())
            parts.append(url.encode("utf-8", "surrogatepass"))
        return binding(parts)

    @staticmethod
    def _pack_name(modules: Sequence[tuple[str, str]], bound: bytes) -> str:
        # The first URL (the package's first file in manifest order) names the
        # package, so a new pack can replace the old one of the same package.
        return f"{pack_prefix(modules[0][1])}{hashlib.sha256(bound).hexdigest()[:40]}"


def pack_prefix(first_url: str) -> str:
    """The start of the file names of every pack of one package: named by
    the URL of the package's first file in manifest order."""
    package = hashlib.sha256(first_url.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_PACK_PREFIX}{package}-"


def module_file_name(sha256: str, url: str) -> str:
    """The file name of the sealed code for ``(sha256, url)``."""
    return _name(sha256, url)


def _name(sha256: str, url: str) -> str:
    url_digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{sha256}-{url_digest}"


def _unmarshal(body: bytes | memoryview) -> object:
    """``marshal.loads`` of an authenticated body; ``None`` if it is not valid."""
    try:
        return marshal.loads(body)  # noqa: S302 - only bodies whose HMAC matched
    except (ValueError, EOFError, TypeError):
        return None


def compile_verified(
    source: bytes, *, sha256: str, url: str, store: BytecodeStore | None = None
) -> CodeType:
    """Code for ``source`` (already verified to hash to ``sha256``), file name ``url``.

    With ``store``, an authenticated code object compiled earlier from the same
    source, URL and interpreter is reused, and a fresh compile is saved.

    Raises:
        SyntaxError, ValueError: the verified source does not compile (as
            :func:`compile` does); a bad bytecode file never raises.
    """
    if store is not None:
        code = store.load(sha256=sha256, url=url)
        if code is not None:
            return code
    code = compile(source, url, "exec", dont_inherit=True)
    if store is not None:
        store.save(code, sha256=sha256, url=url)
    return code
