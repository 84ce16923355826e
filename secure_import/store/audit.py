"""Append-only, hash-chained audit log (JSON lines), plus PEP 578 events.

Invariants:

- every load and every refusal is written *before* the import proceeds or
  raises; if the record cannot be written the import fails (THREATS L7):
  no unaudited code runs;
- each record carries ``prev``, the sha256 of the previous line, so an edited,
  deleted or inserted line breaks the chain and :func:`verify_chain` names
  the first broken line (THREATS L6);
- the hash of the newest line is also kept in an anchor file beside the log
  (``audit.jsonl.head``), so removing whole lines at the end (truncation) is
  reported too.  The anchor lives in the same directory: it catches accidents
  and careless tampering; an attacker who can rewrite both files as the same
  user is only caught by shipping records off the machine (the ``logging``
  bridge, or PEP 578 hooks);
- appends from several processes are serialised by an exclusive lock on the
  log file itself (``flock``; a lock file where ``fcntl`` is missing), and the
  previous hash is read under that lock, so the chain stays linear; threads
  sharing one :class:`AuditLog` are serialised by a mutex as well, because a
  ``flock`` does not exclude holders of the same open file description;
- an :class:`AuditLog` keeps the log and anchor descriptors open between
  appends (no open and close of two files per record), but writes through
  them only while the paths still name the files it holds: under the lock,
  before the log's size is read, it compares ``lstat(path)`` with
  ``fstat(fd)`` for both, and re-opens (``O_NOFOLLOW``, ``O_CREAT``) when they
  differ.  So a log renamed away for rotation or deleted is followed by a
  fresh file whose chain starts again at :data:`GENESIS` while the renamed
  file (and an anchor renamed with it) keeps its own unbroken chain, and a
  symlink planted at either path makes the append fail instead of being
  written through; both checks come before the line is written, so a refused
  append leaves the log as it was;
- a forked child never writes through descriptors inherited from its parent:
  they share the open file description and so the ``flock`` with the parent,
  which would let both append at once and fork the chain.  The child notices
  (its pid differs from the opener's), closes its copies without unlocking
  them (the lock may be the parent's, mid-append) and opens its own; its
  thread mutexes are replaced at fork, since another parent thread may have
  held one;
- descriptors are close-on-exec, so no subprocess inherits them; after any
  failed append they are closed and the next append opens them afresh;
- an append that fails half way (disk full, quota, file-size limit) is rolled
  back under the lock: the log is truncated to its size before the append, so
  no torn record is left for the next append to glue onto.  A tail without a
  final newline found by an append (a crash mid-write, or someone else's
  doing) is never silently extended: the fragment is cut off and an
  ``audit-repair`` record naming its length and sha256 is chained in first;
- a *witness* of the newest record is kept apart from the log directory
  (:attr:`secure_import.store.paths.Paths.audit_witness`, in the cache
  directory, which ``cache clear`` leaves alone), so a log that vanished with
  its directory (the state directory renamed away) does not restart as a
  clean chain: the first record of the new chain is a ``chain-restart``
  record naming the previous chain's last hash, and :func:`verify_chain`
  reports every restart (THREATS H7);
- secrets never enter a record: only names, URLs, digests, versions, codes.

Each append also raises a ``sys.audit("secure_import.<event>", ...)`` event so
PEP 578 hooks see every load even when the file log is shipped elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from secure_import.errors import AuditWriteError, SecureImportError
from secure_import.store.fsutil import secure_dir
from secure_import.store.logbridge import emit, listening

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = ["GENESIS", "AuditLog", "ChainReport", "anchor_path", "verify_chain"]

#: ``prev`` of the first record.
GENESIS = "0" * 64
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Readable too: the last line is read through the descriptor that is locked.
_LOG_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW
_ANCHOR_FLAGS = os.O_WRONLY | os.O_CREAT | _NOFOLLOW
_LOCK_TIMEOUT = 30.0
#: How often one append re-opens a log that keeps being replaced under it
#: before giving up (each replacement needs a rename between two syscalls).
_REOPEN_TRIES = 5
_FIELDS = (
    "time",
    "event",
    "outcome",
    "module",
    "url",
    "sha256",
    "manifest_version",
    "key_id",
    "repo",
    "code",
    "message",
    "via",
    "pid",
)
#: Encodes values other than ``str`` and ``int`` (none today) exactly as
#: ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` does.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_QUOTE = json.encoder.encode_basestring_ascii
_FIELD_SET = frozenset(_FIELDS)
#: The line of a load record around its ``prev`` value, keys in sorted order
#: (as ``json.dumps(sort_keys=True)`` puts them); ``%s`` slots take values
#: already JSON-quoted, ``%d`` slots exact ints.
_LOAD_HEAD = (
    '{"event":"load","key_id":%s,"manifest_version":%d,"module":%s,"outcome":"ok","pid":%d,"prev":'
)
_LOAD_TAIL = ',"repo":%s,"sha256":%s,"time":"%s","url":%s}'


def _split(record: dict[str, object]) -> tuple[str, str]:
    """The record's line around the value of ``prev`` (not in ``record``
    yet): ``head + '"' + prev + '"' + tail`` is byte for byte what
    ``json.dumps({**record, "prev": prev}, sort_keys=True, separators=(",", ":"))``
    gives, since that encodes each value on its own, in key order."""
    before: list[str] = []
    after: list[str] = []
    part = before
    for key in sorted([*record, "prev"]):
        if key == "prev":
            part = after
            continue
        value = record[key]
        kind = type(value)
        if kind is str:
            text = _QUOTE(value)  # type: ignore[arg-type]
        elif kind is int:
            text = int.__repr__(value)
        else:
            text = _ENCODER.encode(value)
        part.append(f"{_QUOTE(key)}:{text}")
    head = "{" + ",".join([*before, '"prev":'])
    tail = "".join("," + item for item in after) + "}"
    return head, tail


#: (whole second since the epoch, its "YYYY-MM-DDTHH:MM:SS" in UTC): formatting
#: the second once and the microseconds per record is ~0.8 us cheaper than
#: ``datetime.now(UTC).isoformat()``.  One tuple, so threads swap it atomically.
_second: tuple[int, str] = (-1, "")


def _timestamp(micros: int) -> str:
    """``micros`` since the epoch as ``2026-01-31T23:59:59.123456Z``: exactly
    ``datetime.fromtimestamp(micros / 10**6, UTC).isoformat(timespec="microseconds")``
    with ``Z`` for ``+00:00``, the format every record has had."""
    global _second
    second, fraction = divmod(micros, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{fraction:06d}Z"


class _LockTimeout(TimeoutError):
    """The log stayed locked by someone else for longer than ``_LOCK_TIMEOUT``."""


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _last_line(fd: int, size: int) -> bytes | None:
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


class _Held(NamedTuple):
    """An open descriptor and the file (``st_dev``, ``st_ino``) it was opened on."""

    fd: int
    file: tuple[int, int]


def _open_held(path: str, flags: int) -> _Held:
    fd = os.open(path, flags, 0o600)  # O_CLOEXEC: os.open makes it non-inheritable
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    return _Held(fd, (info.st_dev, info.st_ino))


def _close_held(held: _Held | None) -> None:
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


class _Descriptors:
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
        self.log: _Held | None = None
        self.anchor: _Held | None = None
        self.witness: _Held | None = None
        #: (file size, hash of the last line) after our own last append through
        #: ``log``: when the file has not grown since, the last line need not be
        #: read again.
        self.tail: tuple[int, str] | None = None

    def close(self) -> None:
        """Close both descriptors (never unlocking: outside an append we hold no
        lock, and in a forked child the lock would be the parent's)."""
        log, anchor, witness = self.log, self.anchor, self.witness
        self.log = self.anchor = self.witness = None
        self.tail = None
        _close_held(log)
        _close_held(anchor)
        _close_held(witness)


#: Every live set of descriptors, so a forked child can replace their mutexes
#: (one held by another parent thread at fork time would never be released).
_LIVE: weakref.WeakSet[_Descriptors] = weakref.WeakSet()


def _reinit_after_fork() -> None:  # pragma: no cover - runs in forked children
    for descriptors in list(_LIVE):
        descriptors.mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


class AuditLog:
    """The audit log file of one user (or one service).

    The log and anchor descriptors are opened on the first append and kept
    until :meth:`close` (or until the object is collected, or the interpreter
    exits).  Several threads may append through one instance; several
    instances, in one process or many, may append to one path.
    """

    def __init__(self, path: Path, *, witness: Path | None = None) -> None:
        self.path = path
        self.anchor = anchor_path(path)
        #: Where the hash of the newest record is also kept, outside the log
        #: directory (``None``: no witness).
        self.witness = witness
        self._witness_name = None if witness is None else os.fspath(witness)
        # str once: a Path costs ~0.5 us per syscall to convert.
        self._log_name = os.fspath(path)
        self._anchor_name = os.fspath(self.anchor)
        self._filelock: FileLock | None = None
        if fcntl is None:  # pragma: no cover - Windows
            # Only where flock is unavailable: a lock file costs ~150 us a record.
            from filelock import FileLock

            self._filelock = FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT)
        self._fds = _Descriptors()
        _LIVE.add(self._fds)
        weakref.finalize(self, self._fds.close)

    def append(self, event: str, *, outcome: str, **fields: object) -> dict[str, object]:
        """Append one record; return it.

        Raises:
            AuditWriteError: the record could not be written (the caller must
                then refuse to run the code it was about to run).  The next
                call tries again with freshly opened descriptors.
        """
        record: dict[str, object] = {
            # time_ns // 1000 floors like datetime.now() does.
            "time": _timestamp(time.time_ns() // 1000),
            "event": event,
            "outcome": outcome,
        }
        for key, value in fields.items():
            if value is not None and key in _FIELD_SET:
                record[key] = value
        pid = record["pid"] = os.getpid()
        sys.audit(f"secure_import.{event}", record.get("module"), record.get("url"), outcome)
        head, tail = _split(record)
        record["prev"] = self._commit(head, tail, pid)
        emit(record)  # only once the file holds it: the file is the record of truth
        return record

    def append_load(
        self, *, module: str, url: str, sha256: str, repo: str, manifest_version: int, key_id: str
    ) -> None:
        """Append the record of one module about to run: the very line
        ``append("load", outcome="ok", ...)`` writes, filled into a fixed
        template.  It is written once per module imported, and skipping the
        record dict, its key sort and the keyword packing was about a third
        of its cost in a warm import.

        Raises:
            AuditWriteError: as :meth:`append`.
        """
        if not (
            type(manifest_version) is int
            and type(module) is str
            and type(url) is str
            and type(sha256) is str
            and type(repo) is str
            and type(key_id) is str
        ):
            self.append(
                "load",
                outcome="ok",
                module=module,
                url=url,
                sha256=sha256,
                repo=repo,
                manifest_version=manifest_version,
                key_id=key_id,
            )
            return
        stamp = _timestamp(time.time_ns() // 1000)
        pid = os.getpid()
        sys.audit("secure_import.load", module, url, "ok")
        prev = self._commit(
            _LOAD_HEAD % (_QUOTE(key_id), manifest_version, _QUOTE(module), pid),
            _LOAD_TAIL % (_QUOTE(repo), _QUOTE(sha256), stamp, _QUOTE(url)),
            pid,
        )
        if listening():
            emit(
                {
                    "time": stamp,
                    "event": "load",
                    "outcome": "ok",
                    "repo": repo,
                    "module": module,
                    "url": url,
                    "sha256": sha256,
                    "manifest_version": manifest_version,
                    "key_id": key_id,
                    "pid": pid,
                    "prev": prev,
                }
            )

    def _commit(self, head: str, tail: str, pid: int) -> str:
        """Write the line ``head + '"' + prev + '"' + tail``, ``prev`` being
        the hash of the log's last line, and return ``prev``; map every
        failure to :class:`AuditWriteError`."""
        fds = self._fds
        mutex = fds.mutex
        try:
            # Uncontended nearly always: the non-blocking try skips the timed wait's set-up.
            if not mutex.acquire(False) and not mutex.acquire(timeout=_LOCK_TIMEOUT):
                raise _LockTimeout(f"{self.path} (held by another thread)")
            try:
                if fds.pid != pid:
                    # Inherited across fork(): the parent's, not ours to use.
                    fds.close()
                prev = self._write(head, tail)
            finally:
                mutex.release()
        except OSError as exc:
            raise AuditWriteError(
                f"cannot write the audit log, so nothing is loaded: {exc}",
                check="audit-write",
                got=str(self.path),
            ) from exc
        except AuditWriteError:
            raise
        except Exception as exc:
            raise AuditWriteError(
                f"cannot use the audit log directory: {exc}",
                check="audit-write",
                got=str(self.path),
            ) from exc
        return prev

    def close(self) -> None:
        """Close the kept-open descriptors; the next append opens them again.
        Calling it twice is harmless."""
        with self._fds.mutex:
            self._fds.close()

    def _write(self, head: str, tail: str) -> str:
        """Lock the log, chain the line ``head + '"' + prev + '"' + tail``
        onto its last line, write it and the anchor, (re-)opening either file
        as needed; return ``prev``.  Called with the mutex held; on any
        failure the descriptors are closed so the next append starts clean."""
        fds = self._fds
        done = False
        log_fd = -1
        try:
            log_fd, size = self._lock_current_log()
            if fds.tail is not None and fds.tail[0] == size:
                prev = fds.tail[1]
            else:
                fds.tail = None
                if size and os.pread(log_fd, 1, size - 1) != b"\n":
                    size = self._repair_tail(log_fd, size)
                if size == 0:
                    size = self._note_restart(log_fd)
                last = _last_line(log_fd, size)
                prev = GENESIS if last is None else _line_hash(last)
            self._put(f'{head}"{prev}"{tail}', log_fd, self._current_anchor(), size)
            done = True
            return prev
        finally:
            if log_fd >= 0:
                self._release(log_fd)
            if not done:
                fds.close()

    def _note(self, log_fd: int, size: int, event: str, outcome: str, message: str) -> int:
        """Chain a note record of ours onto the locked log; return the new size."""
        last = _last_line(log_fd, size)
        prev = GENESIS if last is None else _line_hash(last)
        record: dict[str, object] = {
            "time": _timestamp(time.time_ns() // 1000),
            "event": event,
            "outcome": outcome,
            "code": event,
            "message": message,
            "pid": os.getpid(),
        }
        note_head, note_tail = _split(record)
        self._put(f'{note_head}"{prev}"{note_tail}', log_fd, self._current_anchor(), size)
        sys.audit(f"secure_import.{event}", None, None, outcome)
        return size + len(f'{note_head}"{prev}"{note_tail}'.encode()) + 1

    def _repair_tail(self, log_fd: int, size: int) -> int:
        """Cut a torn last line off and chain an ``audit-repair`` note naming
        it; return the new size."""
        start = size
        block = 4096
        while start > 0:
            begin = max(0, start - block)
            chunk = os.pread(log_fd, start - begin, begin)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = begin + cut + 1
                break
            start = begin
            block *= 2
        fragment = os.pread(log_fd, size - start, start)
        last = _last_line(log_fd, start)
        expected = GENESIS if last is None else _line_hash(last)
        anchor = _read_anchor(self.anchor)
        if anchor is None or anchor == expected:
            why = "the anchor names the last complete record: an interrupted append"
        else:
            why = "the anchor names another record: records may have been removed as well"
        os.ftruncate(log_fd, start)
        return self._note(
            log_fd,
            start,
            "audit-repair",
            "repaired",
            f"the log ended in a torn record of {len(fragment)} bytes "
            f"(sha256 {hashlib.sha256(fragment).hexdigest()}) at offset {start}; it was cut "
            f"off before this record ({why})",
        )

    def _note_restart(self, log_fd: int) -> int:
        """A new (empty) log: if the witness remembers a newest record, the
        earlier chain is gone from this path; say so in the first record."""
        head = self._witness_head()
        if head is None or head == GENESIS:
            return 0
        return self._note(
            log_fd,
            0,
            "chain-restart",
            "noted",
            f"a new audit chain starts here: the previous chain at {self.path} ended with "
            f"record {head}, which is not in this file (rotated, deleted, or moved away "
            "with its directory)",
        )

    def _witness_head(self) -> str | None:
        if self._witness_name is None:
            return None
        try:
            fd = os.open(self._witness_name, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            return None
        try:
            return os.read(fd, 64).decode("ascii", "replace")
        finally:
            os.close(fd)

    def _write_witness(self, digest: bytes) -> None:
        """Best effort: the witness supports the evidence, the log is the record."""
        if self.witness is None or self._witness_name is None:
            return
        fds = self._fds
        try:
            held = fds.witness
            if held is not None:
                info = os.fstat(held.fd)
                try:
                    at_path = os.lstat(self._witness_name)
                    same = (at_path.st_dev, at_path.st_ino) == (info.st_dev, info.st_ino)
                except FileNotFoundError:
                    same = False
                if not same:
                    fds.witness = None
                    _close_held(held)
                    held = None
            if held is None:
                from secure_import.store.cache import MARKER

                secure_dir(self.witness.parent.parent, what="cache", marker=MARKER)
                secure_dir(self.witness.parent, what="audit witness")
                held = fds.witness = _open_held(self._witness_name, _ANCHOR_FLAGS)
            os.pwrite(held.fd, digest, 0)
        except (OSError, SecureImportError):
            pass

    def _put(self, text: str, log_fd: int, anchor_fd: int, size: int) -> None:
        """Write the line ``text`` at the end of the locked log of ``size``
        bytes, then its hash to the anchor.  On any failure the log is cut
        back to ``size``: a failed append leaves no torn record."""
        body = text.encode()
        line = body + b"\n"
        digest = hashlib.sha256(body).hexdigest()
        try:
            written = os.write(log_fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            # A fixed-size overwrite in place: one syscall, no rename.
            os.pwrite(anchor_fd, digest.encode() + b"\n", 0)
        except BaseException:
            self._fds.tail = None
            try:
                os.ftruncate(log_fd, size)
            except OSError:
                pass  # the next append finds the torn tail and repairs it, audited
            raise
        self._fds.tail = (size + written, digest)
        self._write_witness(digest.encode() + b"\n")

    def _lock_current_log(self) -> tuple[int, int]:
        """Return the locked descriptor of the file now at ``self.path`` and its
        size, opening it (again) when the path names another file or none.

        The identity check comes after the lock: a log renamed away while we
        waited for it is noticed, and a new file is locked before its size and
        last line are read.  ``lstat``, so that a symlink planted at the path is
        a different file (and its re-open, ``O_NOFOLLOW``, fails).
        """
        fds = self._fds
        for _ in range(_REOPEN_TRIES):
            if fds.log is None:
                secure_dir(self.path.parent, what="audit log")
                # A new log file starts a new chain, and must not inherit an
                # anchor descriptor checked against the old one.
                fds.close()
                fds.log = _open_held(self._log_name, _LOG_FLAGS)
                fds.pid = os.getpid()
            fd = fds.log.fd
            self._acquire(fd)
            try:
                held = os.fstat(fd)
                at_path = os.lstat(self._log_name)
                if at_path.st_ino == held.st_ino and at_path.st_dev == held.st_dev:
                    return fd, held.st_size
            except FileNotFoundError:
                pass  # deleted, or renamed away for rotation: start a new file
            except BaseException:
                self._release(fd)
                raise
            self._release(fd)
            fds.close()
        raise OSError(f"{self.path} was replaced {_REOPEN_TRIES} times during one append")

    def _current_anchor(self) -> int:
        """The descriptor of the file now at ``self.anchor``, opened (again) when
        the path names another file or none.  Called under the log lock, which
        every anchor writer holds."""
        fds = self._fds
        anchor = fds.anchor
        if anchor is not None:
            try:
                held = os.fstat(anchor.fd)
                at_path = os.lstat(self._anchor_name)
                if at_path.st_ino == held.st_ino and at_path.st_dev == held.st_dev:
                    return anchor.fd
            except FileNotFoundError:
                pass
            fds.anchor = None
            _close_held(anchor)
        fds.anchor = _open_held(self._anchor_name, _ANCHOR_FLAGS)
        return fds.anchor.fd

    def _acquire(self, fd: int) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            from filelock import Timeout

            assert self._filelock is not None
            try:
                self._filelock.acquire()
            except Timeout as exc:
                raise _LockTimeout(str(self.path)) from exc
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            time.sleep(0.0005)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _LockTimeout(str(self.path)) from None

    def _release(self, fd: int) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            if self._filelock is not None and self._filelock.is_locked:
                self._filelock.release()
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # closing the descriptor releases it anyway

    def records(self) -> Iterator[dict[str, object]]:
        """Yield records in order; lines that are not JSON objects are skipped."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as handle:
            for raw in handle:
                try:
                    value = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    yield value


def anchor_path(log: Path) -> Path:
    """Where the hash of the newest record of ``log`` is kept."""
    return log.with_name(log.name + ".head")


def _read_anchor(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(64).decode("ascii", "replace")


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int
    #: 1-based line number of the first line whose ``prev`` does not match.
    broken_at: int | None = None
    reason: str | None = None
    #: ``"line N: message"`` for every ``chain-restart`` record: the chain is
    #: intact from there on, but what came before it is not in this file.
    restarts: tuple[str, ...] = ()
    #: ``"line N: message"`` for every ``audit-repair`` record.
    repairs: tuple[str, ...] = ()


def verify_chain(path: Path, *, witness: Path | None = None) -> ChainReport:
    """Check every record's ``prev`` against the line before it, and the last
    line against the anchor and (if given) the witness kept apart."""
    anchor = _read_anchor(anchor_path(path))
    seen = None if witness is None else _read_anchor(witness)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        if anchor is not None or (seen is not None and seen != GENESIS):
            return ChainReport(
                False,
                0,
                1,
                "the log is missing but its anchor or witness says records were written "
                "(deleted log)",
            )
        return ChainReport(True, 0)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    if data and not data.endswith(b"\n"):
        lines = data.split(b"\n")
        return ChainReport(
            False, len(lines) - 1, len(lines), "the last line is incomplete (truncated log)"
        )
    expected = GENESIS
    count = 0
    restarts: list[str] = []
    repairs: list[str] = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return ChainReport(False, count, number, "line is not valid JSON (edited)")
        if not isinstance(record, dict) or record.get("prev") != expected:
            return ChainReport(
                False,
                count,
                number,
                "prev hash does not match the line before (edited, inserted or deleted line)",
            )
        if record.get("event") == "chain-restart":
            restarts.append(f"line {number}: {record.get('message')}")
        elif record.get("event") == "audit-repair":
            repairs.append(f"line {number}: {record.get('message')}")
        expected = _line_hash(line)
        count += 1
    if anchor is not None and anchor != expected:
        return ChainReport(
            False,
            count,
            count + 1,
            "the log ends before the newest record written (lines removed at the end)",
        )
    if seen is not None and seen != expected and seen != GENESIS:
        return ChainReport(
            False,
            count,
            count + 1,
            "the log does not end with the newest record its witness remembers "
            "(lines removed, or the log replaced together with its anchor)",
        )
    return ChainReport(True, count, restarts=tuple(restarts), repairs=tuple(repairs))
