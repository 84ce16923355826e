"""Sealed files: artefacts derived from verified data, authenticated with a local key.

Some results cost far more to recompute than to keep: a code object compiled
from verified source, or the parse of a manifest whose signature verified.
They cannot be re-checked the way source can (re-hashing a code object proves
nothing), so they are *sealed*: written with an HMAC under a key that only the
trust state holds, and never parsed unless the HMAC matches.

Who can write what (the reasoning behind the invariants):

- the *cache* directory is disposable and is the place an attacker who can
  write some local files is assumed to reach (THREATS L1, L8): it may be shared,
  synced, restored from a backup or cleaned by tools.  Sealed files live there;
- the *state* directory holds the trust state (high-water marks, rotated
  roots).  Anyone who can write it can already roll the client back or pin
  their own root, so keeping the sealing key there gives nobody a power they
  did not already have.  The key never enters the cache directory.

Invariants:

- a sealed file is ``FORMAT | HMAC-SHA256(key, binding | body) | body``.  The
  *binding* is everything the body's meaning depends on (the verified digests,
  URLs, interpreter, trusted keys...); it is never stored, so a file that is
  genuine for another binding (stale, another URL, another interpreter) fails
  the HMAC even when copied under this file's name;
- the HMAC is checked (constant time) *before* the caller sees the body: the
  callers unmarshal it, and marshal is not safe against crafted input, so an
  unauthenticated byte is never parsed;
- the key is 32 random bytes created once (``secrets``) in the state
  directory, mode 0600, never rewritten, read only from a private regular file
  we own.  Opening a sealed file never creates the key (a lookup must not
  change the state directory): only sealing does;
- a file is read once, into memory, without following a symlink (L4, L5);
  the bytes checked are the bytes returned;
- a file that fails its check is deleted.  A bad, missing or unwritable file,
  key or directory never raises: the caller falls back to recomputing from
  verified data, which is always safe;
- a read-only store (``readonly=True``: a baked image layer) never writes,
  deletes or creates anything, the key included: files that verify are used,
  the others ignored; :meth:`SealedStore.check` inspects a file without
  deleting it (``secure-import cache verify``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Iterable

from secure_import.errors import SecureImportError
from secure_import.store.cache import MARKER
from secure_import.store.fsutil import atomic_write, make_temp, read_file, secure_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FORMAT", "KEY_NAME", "SealedStore", "binding"]

#: Leading bytes of every sealed file; bump when the layout changes.
FORMAT = b"SIBC\x01"
#: File name of the HMAC key inside the state directory.
KEY_NAME = "bytecode.key"
_KEY_BYTES = 32
_MAC_BYTES = 32
_HEADER = len(FORMAT) + _MAC_BYTES
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def binding(parts: Iterable[bytes]) -> bytes:
    """Length-prefixed fields, so no two different bindings serialise alike."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


class SealedStore:
    """Sealed files in one folder of the cache directory.

    Thread-safe; :meth:`open` and :meth:`seal` never raise.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cache_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        readonly: bool = False,
    ) -> None:
        # Strings: every open and seal is an ``os`` call (no pathlib here).
        self._directory = os.fspath(directory)
        self.readonly = readonly
        self._cache_dir = os.fspath(cache_dir)
        self._state_dir = os.fspath(state_dir)
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._no_key = False
        self._dir_ready = False

    @property
    def directory(self) -> Path:
        from pathlib import Path

        return Path(self._directory)

    @property
    def cache_dir(self) -> Path:
        from pathlib import Path

        return Path(self._cache_dir)

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(self._state_dir)

    def open(self, name: str, bound: bytes) -> memoryview | None:
        """The authenticated body of ``name`` for binding ``bound``, or ``None``.

        A file that is present but fails the check is deleted.
        """
        data = read_file(os.path.join(self._directory, name))
        if data is None:
            return None
        key = self._existing_key()
        if key is None or len(data) <= _HEADER or not data.startswith(FORMAT):
            self.discard(name)
            return None
        # A view, not a copy: packs run to megabytes.
        body = memoryview(data)[_HEADER:]
        if not hmac.compare_digest(data[len(FORMAT) : _HEADER], _mac(key, bound, body)):
            self.discard(name)
            return None
        return body

    def check(self, name: str, bound: bytes) -> tuple[memoryview | None, str | None]:
        """``(body, None)`` when ``name`` is a genuine seal for ``bound``, else
        ``(None, why)`` (``"missing"`` when there is no file).  Deletes nothing."""
        data = read_file(os.path.join(self._directory, name))
        if data is None:
            return None, "missing"
        key = self._existing_key()
        if key is None:
            return None, f"no sealing key ({KEY_NAME}) in the state directory"
        if len(data) <= _HEADER or not data.startswith(FORMAT):
            return None, "not a sealed file (bad header or too short)"
        body = memoryview(data)[_HEADER:]
        if not hmac.compare_digest(data[len(FORMAT) : _HEADER], _mac(key, bound, body)):
            return None, "seal (HMAC) does not match: altered, or made for other content"
        return body, None

    def seal(self, name: str, bound: bytes, body: bytes) -> bool:
        """Write ``body`` sealed to ``bound`` as ``name``; False if it could not be."""
        if self.readonly:
            return False
        key = self._get_key()
        if key is None:
            return False
        try:
            mac = _mac(key, bound, body)
            if not self._ensure_dir():
                return False
            atomic_write(os.path.join(self._directory, name), [FORMAT, mac, body])
        except (OSError, ValueError):
            return False  # a cache that cannot be written only costs a recompute
        return True

    def discard(self, name: str) -> None:
        if self.readonly:
            return
        try:
            os.unlink(os.path.join(self._directory, name))
        except OSError:
            pass

    def names(self, prefix: str) -> list[str]:
        """Names in the folder starting with ``prefix`` (for pruning)."""
        try:
            return [n for n in os.listdir(self._directory) if n.startswith(prefix)]
        except OSError:
            return []

    # -- key ------------------------------------------------------------------

    def _existing_key(self) -> bytes | None:
        """The key if it exists; never creates it.  Remembered once read."""
        if self._key is None:
            key = _read_key(os.path.join(self._state_dir, KEY_NAME))
            if key is not None:
                self._key = key
        return self._key

    def _get_key(self) -> bytes | None:
        if self._key is not None or self._no_key:
            return self._key
        with self._lock:
            if self._key is None and not self._no_key:
                self._key = self._load_or_create_key()
                self._no_key = self._key is None
            return self._key

    def _ensure_dir(self) -> bool:
        if self._dir_ready:
            return True
        try:
            secure_dir(self._cache_dir, what="cache", marker=MARKER)
            parent = os.path.dirname(self._directory)
            if os.path.normpath(parent) != os.path.normpath(self._cache_dir):
                secure_dir(parent, what="cache")
            secure_dir(self._directory, what="sealed cache")
        except SecureImportError:
            return False
        self._dir_ready = True
        return True

    def _load_or_create_key(self) -> bytes | None:
        """Read the key, creating it once if absent; ``None`` if unusable."""
        try:
            secure_dir(self._state_dir, what="state")
        except SecureImportError:
            return None
        path = os.path.join(self._state_dir, KEY_NAME)
        key = _read_key(path)
        if key is not None or os.path.lexists(path):
            return key
        try:
            fd, tmp = make_temp(self._state_dir)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "wb") as handle:
                # os.urandom is what ``secrets.token_bytes`` returns.
                handle.write(os.urandom(_KEY_BYTES))
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


def _mac(key: bytes, bound: bytes, body: bytes | memoryview) -> bytes:
    """HMAC-SHA256 over ``bound | body`` without concatenating them."""
    mac = hmac.new(key, bound, "sha256")
    mac.update(body)
    return mac.digest()


def _read_key(path: str) -> bytes | None:
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


def digest_name(prefix: str, bound: bytes) -> str:
    """A file name derived from a binding (so files for different bindings
    never evict each other)."""
    return f"{prefix}{hashlib.sha256(bound).hexdigest()[:40]}"
