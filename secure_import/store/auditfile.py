"""The audit log's files: descriptors kept open between appends, the lock that
serialises appenders, the anchor beside the log and the witness kept apart.

:class:`secure_import.store.audit.AuditLog` decides what is written; this
module holds the file-level pieces it uses, each with the invariant it keeps
(the full list is in :mod:`secure_import.store.audit`):

- a descriptor is only closed while its number still names the file it was
  opened on (code that closed it behind our back may have reused the number);
- a forked child gets fresh thread mutexes for every live set of descriptors
  (one held by another parent thread at fork time would never be released);
- every open refuses a symlink (``O_NOFOLLOW``) and is close-on-exec;
- the lock is ``flock`` on the log's own descriptor (a lock file only where
  ``fcntl`` is missing), waited for at most :data:`LOCK_TIMEOUT` seconds;
- the witness is best effort: it supports the evidence, the log is the record.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from secure_import.errors import SecureImportError
from secure_import.store.fsutil import secure_dir

# File names are strings (``os`` calls): pathlib and typing stay off the
# start-up path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from filelock import FileLock

    StrPath = str | os.PathLike[str]

__all__ = [
    "ANCHOR_FLAGS",
    "LOCK_TIMEOUT",
    "LOG_FLAGS",
    "NOFOLLOW",
    "Descriptors",
    "Held",
    "LockTimeout",
    "acquire",
    "anchor_name",
    "anchor_path",
    "close_held",
    "fallback_lock",
    "last_line",
    "open_held",
    "read_anchor",
    "read_witness",
    "release",
    "write_witness",
]

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Readable too: the last line is read through the descriptor that is locked.
LOG_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW
ANCHOR_FLAGS = os.O_WRONLY | os.O_CREAT | NOFOLLOW
LOCK_TIMEOUT = 30.0


class LockTimeout(TimeoutError):
    """The log stayed locked by someone else for longer than ``LOCK_TIMEOUT``."""


def last_line(fd: int, size: int) -> bytes | None:
    """The last line of the first ``size`` bytes of the file open on ``fd``
    (readable), without its newline; None if it is empty.  Read through the
    descriptor we hold and have locked: the very file the next line goes to."""
    if size == 0:
        return None
    block = 4096
    pos = size
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
        block *= 2
    return data.rstrip(b"\n")


class Held:
    """An open descriptor and the file (``st_dev``, ``st_ino``) it was opened on."""

    __slots__ = ("fd", "file")

    def __init__(self, fd: int, file: tuple[int, int]) -> None:
        self.fd = fd
        self.file = file


def open_held(path: str, flags: int) -> Held:
    fd = os.open(path, flags, 0o600)  # O_CLOEXEC: os.open makes it non-inheritable
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    return Held(fd, (info.st_dev, info.st_ino))


def close_held(held: Held | None) -> None:
    """Close ``held`` if its number still refers to the file we opened: code
    that closed it behind our back (``os.closerange`` in a daemonising child)
    may have reused the number for a file of its own."""
    if held is None:
        return
    try:
        info = os.fstat(held.fd)
        if (info.st_dev, info.st_ino) == held.file:
            os.close(held.fd)
    except OSError:
        pass


class Descriptors:
    """What one :class:`AuditLog` keeps between appends.

    Separate from the log object so that a ``weakref.finalize`` can close the
    descriptors without keeping the log alive.
    """

    __slots__ = ("__weakref__", "anchor", "log", "mutex", "pid", "tail", "witness")

    def __init__(self) -> None:
        #: Held from taking the log lock to writing the anchor.
        self.mutex = threading.Lock()
        #: The process that opened ``log`` and ``anchor``.
        self.pid = 0
        self.log: Held | None = None
        self.anchor: Held | None = None
        self.witness: Held | None = None
        #: (file size, hash of the last line) after our own last append through
        #: ``log``: when the file has not grown since, the last line need not be
        #: read again.
        self.tail: tuple[int, str] | None = None
        _LIVE.add(self)

    def close(self) -> None:
        """Close both descriptors (never unlocking: outside an append we hold no
        lock, and in a forked child the lock would be the parent's)."""
        log, anchor, witness = self.log, self.anchor, self.witness
        self.log = self.anchor = self.witness = None
        self.tail = None
        close_held(log)
        close_held(anchor)
        close_held(witness)


#: Every live set of descriptors, so a forked child can replace their mutexes
#: (one held by another parent thread at fork time would never be released).
_LIVE: weakref.WeakSet[Descriptors] = weakref.WeakSet()


def _reinit_after_fork() -> None:  # pragma: no cover - runs in forked children
    for descriptors in list(_LIVE):
        descriptors.mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def fallback_lock(path: StrPath) -> FileLock | None:
    """A lock file beside ``path``, only where ``flock`` is unavailable (it costs
    ~150 us a record); ``None`` where the log's own descriptor is locked."""
    if fcntl is not None:
        return None
    from filelock import FileLock  # pragma: no cover - Windows

    return FileLock(os.fspath(path) + ".lock", timeout=LOCK_TIMEOUT)  # pragma: no cover


def acquire(fd: int, filelock: FileLock | None, path: StrPath) -> None:
    """Take the exclusive lock on the log open on ``fd``; raise :class:`LockTimeout`
    after :data:`LOCK_TIMEOUT` seconds of someone else holding it."""
    if fcntl is None:  # pragma: no cover - Windows
        from filelock import Timeout

        assert filelock is not None
        try:
            filelock.acquire()
        except Timeout as exc:
            raise LockTimeout(os.fspath(path)) from exc
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        time.sleep(0.0005)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LockTimeout(os.fspath(path)) from None


def release(fd: int, filelock: FileLock | None) -> None:
    """Release the lock :func:`acquire` took."""
    if fcntl is None:  # pragma: no cover - Windows
        if filelock is not None and filelock.is_locked:
            filelock.release()
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass  # closing the descriptor releases it anyway


def anchor_path(log: Path) -> Path:
    """Where the hash of the newest record of ``log`` is kept (as a string:
    :func:`anchor_name`)."""
    return log.with_name(log.name + ".head")


def anchor_name(log: StrPath) -> str:
    """:func:`anchor_path` of ``log`` as a string."""
    return os.fspath(log) + ".head"


def read_anchor(path: StrPath) -> str | None:
    """The hash an anchor or witness file holds; ``None`` if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(64).decode("ascii", "replace")


def read_witness(name: str | None) -> str | None:
    """The newest record the witness at ``name`` remembers (``None``: none)."""
    if name is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, 64).decode("ascii", "replace")
    finally:
        os.close(fd)


def write_witness(fds: Descriptors, name: str | None, digest: bytes) -> None:
    """Write ``digest`` to the witness file ``name`` (``None``: no witness),
    re-opening it when the path names another file.  Best effort: the witness
    supports the evidence, the log is the record."""
    if name is None:
        return
    try:
        held = fds.witness
        if held is not None:
            info = os.fstat(held.fd)
            try:
                at_path = os.lstat(name)
                same = (at_path.st_dev, at_path.st_ino) == (info.st_dev, info.st_ino)
            except FileNotFoundError:
                same = False
            if not same:
                fds.witness = None
                close_held(held)
                held = None
        if held is None:
            from secure_import.store.cache import MARKER

            folder = os.path.dirname(name)
            secure_dir(os.path.dirname(folder), what="cache", marker=MARKER)
            secure_dir(folder, what="audit witness")
            held = fds.witness = open_held(name, ANCHOR_FLAGS)
        os.pwrite(held.fd, digest, 0)
    except (OSError, SecureImportError):
        pass
