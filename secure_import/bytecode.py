"""Compiling verified source into code objects, with an authenticated bytecode cache.

:func:`compile_verified` is the single place where verified bytes become code.
With a :class:`BytecodeStore` it reuses a code object compiled earlier from the
*same verified bytes*, which saves the compile on a warm import; without one it
simply compiles.

Who can write what (the reasoning behind the invariants):

- the *cache* directory is disposable and is the place an attacker who can
  write some local files is assumed to reach (THREATS L1, L8): it may be shared,
  synced, restored from a backup or cleaned by tools.  Source files there are
  safe because they are named by their sha256 and re-hashed on every read; a
  code object cannot be checked that way without compiling again, so bytecode
  files are *authenticated* instead;
- the *state* directory holds the trust state (high-water marks, rotated
  roots).  Anyone who can write it can already roll the client back or pin
  their own root, so keeping the bytecode key there gives nobody a power they
  did not already have.  The key never enters the cache directory.

Invariants:

- a bytecode file is ``FORMAT | HMAC-SHA256(key, binding | body) | body`` where
  ``body`` is the marshalled code and ``binding`` is (source sha256, https URL,
  importlib magic number, ``sys.implementation.cache_tag``, optimisation
  level, this file format).  The key is 32 random bytes created once
  (``secrets``) in the state directory, mode 0600, never rewritten;
- the HMAC is checked (constant time) *before* ``marshal.loads`` ever sees the
  bytes: marshal is not safe against crafted input, so an unauthenticated
  byte is never parsed, let alone executed.  A planted file cannot be forged
  without the key;
- everything the code depends on is in the binding, so a genuine file for
  other source (stale), another URL, another interpreter or another ``-O``
  level fails the HMAC even when copied under this file's name; the binding is
  also in the file name so such files do not evict each other;
- the file is read once, into memory, without following a symlink (L4, L5);
  the bytes checked are the bytes unmarshalled;
- a code object is used only if it is a code object whose ``co_filename`` is
  the https URL (tracebacks, ``inspect`` and ``linecache`` rely on it);
- a file that fails any check is deleted and the verified source is compiled
  again.  A bad, missing or unwritable bytecode file, key or directory never
  raises and never blocks an import: the fallback is the plain compile, which
  is always safe because the caller passes only verified source.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import marshal
import os
import secrets
import stat
import sys
import tempfile
import threading
from pathlib import Path
from types import CodeType

from .errors import SecureImportError
from .fsutil import atomic_write, read_file, secure_dir

__all__ = ["FORMAT", "KEY_NAME", "BytecodeStore", "compile_verified"]

#: Leading bytes of every bytecode file; bump when the layout changes.
FORMAT = b"SIBC\x01"
#: File name of the HMAC key inside the state directory.
KEY_NAME = "bytecode.key"
#: Folder of bytecode files inside the cache directory.
BYTECODE_DIR = "bytecode"
_KEY_BYTES = 32
_MAC_BYTES = 32
_HEADER = len(FORMAT) + _MAC_BYTES
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _field(value: bytes) -> bytes:
    """Length-prefixed field, so no two bindings serialise to the same bytes."""
    return len(value).to_bytes(4, "big") + value


class BytecodeStore:
    """Authenticated code objects for verified sources, under the cache directory.

    One instance per repository is enough (the files are keyed by content, so
    several repositories may share a directory).  Thread-safe; never raises
    from :meth:`load` or :meth:`save`.
    """

    def __init__(self, cache_dir: Path, state_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.state_dir = Path(state_dir)
        tag = sys.implementation.cache_tag
        self.magic = importlib.util.MAGIC_NUMBER
        self.optimize = sys.flags.optimize
        #: ``None`` disables the store (as importlib does without a cache tag).
        self.tag = tag
        self.directory = (
            None
            if tag is None
            else self.cache_dir / BYTECODE_DIR / f"{tag}-{self.magic.hex()}-opt{self.optimize}"
        )
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._disabled = tag is None
        self._dir_ready = False

    # -- public -------------------------------------------------------------

    def path_for(self, *, sha256: str, url: str) -> Path | None:
        """Where the code for ``(sha256, url)`` is kept in this interpreter."""
        if self.directory is None:
            return None
        url_digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.directory / f"{sha256}-{url_digest}"

    def load(self, *, sha256: str, url: str) -> CodeType | None:
        """The cached code for this verified source, or ``None``.

        A file that is present but fails a check is deleted.
        """
        path = self.path_for(sha256=sha256, url=url)
        if path is None:
            return None
        data = read_file(path)
        if data is None:
            return None
        # Reading never creates the key: only a save does.  Without a key no
        # file can authenticate, and a lookup must not change the state dir.
        key = self._key if self._key is not None else _read_key(self.state_dir / KEY_NAME)
        if key is None:
            self._discard(path)
            return None
        code = self._decode(data, key, sha256=sha256, url=url)
        if code is None:
            self._discard(path)
        return code

    def save(self, code: CodeType, *, sha256: str, url: str) -> None:
        """Store ``code`` (compiled from the verified source ``sha256`` at ``url``)."""
        path = self.path_for(sha256=sha256, url=url)
        key = self._get_key()
        if path is None or key is None or code.co_filename != url:
            return
        try:
            body = marshal.dumps(code)
            mac = hmac.digest(key, self._binding(sha256, url) + body, "sha256")
            if not self._ensure_dir():
                return
            atomic_write(path, FORMAT + mac + body)
        except (OSError, ValueError):
            pass  # a cache that cannot be written only costs a compile next time

    # -- internals -------------------------------------------------------------

    def _binding(self, sha256: str, url: str) -> bytes:
        assert self.tag is not None
        return b"".join(
            _field(part)
            for part in (
                FORMAT,
                self.magic,
                self.tag.encode(),
                str(self.optimize).encode(),
                sha256.encode(),
                url.encode("utf-8", "surrogatepass"),
            )
        )

    def _decode(self, data: bytes, key: bytes, *, sha256: str, url: str) -> CodeType | None:
        if len(data) <= _HEADER or not data.startswith(FORMAT):
            return None
        mac, body = data[len(FORMAT) : _HEADER], data[_HEADER:]
        expected = hmac.digest(key, self._binding(sha256, url) + body, "sha256")
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            code = marshal.loads(body)  # noqa: S302 - only after the HMAC check above
        except (ValueError, EOFError, TypeError):
            return None
        if not isinstance(code, CodeType) or code.co_filename != url:
            return None
        return code

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def _ensure_dir(self) -> bool:
        if self._dir_ready:
            return True
        assert self.directory is not None
        try:
            secure_dir(self.cache_dir, what="cache")
            secure_dir(self.directory, what="bytecode cache")
        except SecureImportError:
            return False
        self._dir_ready = True
        return True

    def _get_key(self) -> bytes | None:
        if self._key is not None or self._disabled:
            return self._key
        with self._lock:
            if self._key is None and not self._disabled:
                self._key = self._load_or_create_key()
                self._disabled = self._key is None
            return self._key

    def _load_or_create_key(self) -> bytes | None:
        """Read the key, creating it once if absent; ``None`` if unusable."""
        try:
            secure_dir(self.state_dir, what="state")
        except SecureImportError:
            return None
        path = self.state_dir / KEY_NAME
        key = _read_key(path)
        if key is not None or os.path.lexists(path):
            return key
        try:
            fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".tmp-", suffix=".part")
        except OSError:
            return None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(_KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            # link() creates the name only if absent: two processes racing here
            # both end up reading the same, first key.
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            return None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return _read_key(path)


def _read_key(path: Path) -> bytes | None:
    """The key if ``path`` is our own private regular file of the right size."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_mode & 0o077
            or (hasattr(os, "getuid") and info.st_uid != os.getuid())
        ):
            return None
        data = os.read(fd, _KEY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == _KEY_BYTES else None


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
