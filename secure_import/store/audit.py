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

The pieces live beside this module: :mod:`~secure_import.store.auditformat`
(the record's line and hash), :mod:`~secure_import.store.auditfile` (kept-open
descriptors, the lock, anchor and witness files) and
:mod:`~secure_import.store.auditchain` (checking a log's chain).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import weakref
from collections.abc import Iterator

from secure_import.errors import AuditWriteError
from secure_import.store.auditchain import ChainReport, verify_chain
from secure_import.store.auditfile import (
    ANCHOR_FLAGS,
    LOCK_TIMEOUT,
    LOG_FLAGS,
    NOFOLLOW,
    Descriptors,
    LockTimeout,
    acquire,
    anchor_name,
    anchor_path,
    close_held,
    fallback_lock,
    last_line,
    open_held,
    read_anchor,
    read_witness,
    release,
    write_witness,
)
from secure_import.store.auditformat import (
    FIELD_SET,
    GENESIS,
    LOAD_HEAD,
    LOAD_TAIL,
    QUOTE,
    line_hash,
    split_record,
    timestamp,
)
from secure_import.store.fsutil import secure_dir
from secure_import.store.logbridge import emit, listening

# File names are kept as strings (``os`` calls); pathlib is imported only by
# the ``Path`` attributes, when read.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["GENESIS", "AuditLog", "ChainReport", "anchor_path", "verify_chain"]

#: How often one append re-opens a log that keeps being replaced under it
#: before giving up (each replacement needs a rename between two syscalls).
_REOPEN_TRIES = 5


class AuditLog:
    """The audit log file of one user (or one service).

    The log and anchor descriptors are opened on the first append and kept
    until :meth:`close` (or until the object is collected, or the interpreter
    exits).  Several threads may append through one instance; several
    instances, in one process or many, may append to one path.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, witness: str | os.PathLike[str] | None = None
    ) -> None:
        #: Where the hash of the newest record is also kept, outside the log
        #: directory (``None``: no witness).
        self._witness_name = None if witness is None else os.fspath(witness)
        # Strings: a Path costs ~0.5 us per syscall to convert, and a process
        # that names its directories never imports pathlib.
        self._log_name = os.fspath(path)
        self._anchor_name = anchor_name(path)
        # Only where flock is unavailable: a lock file costs ~150 us a record.
        self._filelock = fallback_lock(path)
        self._fds = Descriptors()
        weakref.finalize(self, self._fds.close)

    @property
    def path(self) -> Path:
        """The log file."""
        from pathlib import Path

        return Path(self._log_name)

    @property
    def anchor(self) -> Path:
        """The file holding the hash of the newest record (:func:`anchor_path`)."""
        from pathlib import Path

        return Path(self._anchor_name)

    @property
    def witness(self) -> Path | None:
        """The witness file kept apart from the log directory, if any."""
        if self._witness_name is None:
            return None
        from pathlib import Path

        return Path(self._witness_name)

    def append(self, event: str, *, outcome: str, **fields: object) -> dict[str, object]:
        """Append one record; return it.

        Raises:
            AuditWriteError: the record could not be written (the caller must
                then refuse to run the code it was about to run).  The next
                call tries again with freshly opened descriptors.
        """
        record: dict[str, object] = {
            # time_ns // 1000 floors like datetime.now() does.
            "time": timestamp(time.time_ns() // 1000),
            "event": event,
            "outcome": outcome,
        }
        for key, value in fields.items():
            if value is not None and key in FIELD_SET:
                record[key] = value
        pid = record["pid"] = os.getpid()
        sys.audit(f"secure_import.{event}", record.get("module"), record.get("url"), outcome)
        head, tail = split_record(record)
        record["prev"] = self._commit(head, tail, pid)
        emit(record)  # only once the file holds it: the file is the record of truth
        return record

    def append_load(
        self,
        *,
        module: str,
        url: str,
        sha256: str,
        repo: str,
        manifest_version: int,
        key_id: str,
        host: str,
    ) -> None:
        """Append the record of one module about to run: the very line
        ``append("load", outcome="ok", ...)`` writes, filled into a fixed
        template.  It is written once per module imported, and skipping the
        record dict, its key sort and the keyword packing was about a third
        of its cost in a warm import.  ``host``: the host that served the
        module's bytes (``"cache"`` when they came from the verified cache).

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
            and type(host) is str
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
                host=host,
            )
            return
        stamp = timestamp(time.time_ns() // 1000)
        pid = os.getpid()
        sys.audit("secure_import.load", module, url, "ok")
        prev = self._commit(
            LOAD_HEAD % (QUOTE(host), QUOTE(key_id), manifest_version, QUOTE(module), pid),
            LOAD_TAIL % (QUOTE(repo), QUOTE(sha256), stamp, QUOTE(url)),
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
                    "host": host,
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
            if not mutex.acquire(False) and not mutex.acquire(timeout=LOCK_TIMEOUT):
                raise LockTimeout(f"{self._log_name} (held by another thread)")
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
                got=self._log_name,
            ) from exc
        except AuditWriteError:
            raise
        except Exception as exc:
            raise AuditWriteError(
                f"cannot use the audit log directory: {exc}",
                check="audit-write",
                got=self._log_name,
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
                last = last_line(log_fd, size)
                prev = GENESIS if last is None else line_hash(last)
            self._put(f'{head}"{prev}"{tail}', log_fd, self._current_anchor(), size)
            done = True
            return prev
        finally:
            if log_fd >= 0:
                release(log_fd, self._filelock)
            if not done:
                fds.close()

    def _note(self, log_fd: int, size: int, event: str, outcome: str, message: str) -> int:
        """Chain a note record of ours onto the locked log; return the new size."""
        last = last_line(log_fd, size)
        prev = GENESIS if last is None else line_hash(last)
        record: dict[str, object] = {
            "time": timestamp(time.time_ns() // 1000),
            "event": event,
            "outcome": outcome,
            "code": event,
            "message": message,
            "pid": os.getpid(),
        }
        note_head, note_tail = split_record(record)
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
        last = last_line(log_fd, start)
        expected = GENESIS if last is None else line_hash(last)
        anchor = read_anchor(self._anchor_name)
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
        head = read_witness(self._witness_name)
        if head is None or head == GENESIS:
            return 0
        return self._note(
            log_fd,
            0,
            "chain-restart",
            "noted",
            f"a new audit chain starts here: the previous chain at {self._log_name} ended with "
            f"record {head}, which is not in this file (rotated, deleted, or moved away "
            "with its directory)",
        )

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
        write_witness(self._fds, self._witness_name, digest.encode() + b"\n")

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
                secure_dir(os.path.dirname(self._log_name) or ".", what="audit log")
                # A new log file starts a new chain, and must not inherit an
                # anchor descriptor checked against the old one.
                fds.close()
                fds.log = open_held(self._log_name, LOG_FLAGS)
                fds.pid = os.getpid()
            fd = fds.log.fd
            acquire(fd, self._filelock, self._log_name)
            try:
                held = os.fstat(fd)
                at_path = os.lstat(self._log_name)
                if at_path.st_ino == held.st_ino and at_path.st_dev == held.st_dev:
                    return fd, held.st_size
            except FileNotFoundError:
                pass  # deleted, or renamed away for rotation: start a new file
            except BaseException:
                release(fd, self._filelock)
                raise
            release(fd, self._filelock)
            fds.close()
        raise OSError(f"{self._log_name} was replaced {_REOPEN_TRIES} times during one append")

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
            close_held(anchor)
        fds.anchor = open_held(self._anchor_name, ANCHOR_FLAGS)
        return fds.anchor.fd

    def records(self) -> Iterator[dict[str, object]]:
        """Yield records in order; lines that are not JSON objects are skipped."""
        try:
            fd = os.open(self._log_name, os.O_RDONLY | NOFOLLOW)
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
