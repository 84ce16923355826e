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
  previous hash is read under that lock, so the chain stays linear;
- secrets never enter a record: only names, URLs, digests, versions, codes.

Each append also raises a ``sys.audit("secure_import.<event>", ...)`` event so
PEP 578 hooks see every load even when the file log is shipped elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .errors import AuditWriteError
from .fsutil import secure_dir

__all__ = ["GENESIS", "AuditLog", "ChainReport", "anchor_path", "verify_chain"]

#: ``prev`` of the first record.
GENESIS = "0" * 64
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_LOCK_TIMEOUT = 30.0
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
    "pid",
)


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _last_line(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return None
        block = 4096
        pos = end
        data = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
            block *= 2
        return data.rstrip(b"\n")


class AuditLog:
    """The audit log file of one user (or one service)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.anchor = anchor_path(path)
        # Only where flock is unavailable: a lock file costs ~150 us a record.
        self._filelock = None if fcntl is not None else FileLock(
            str(path) + ".lock", timeout=_LOCK_TIMEOUT
        )
        self._ready = False
        #: (file size, hash of the last line) after our own last append: when the
        #: file has not grown since, the last line need not be read again.
        self._tail: tuple[int, str] | None = None

    def append(self, event: str, *, outcome: str, **fields: object) -> dict[str, object]:
        """Append one record; return it.

        Raises:
            AuditWriteError: the record could not be written (the caller must
                then refuse to run the code it was about to run).
        """
        record: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "event": event,
            "outcome": outcome,
        }
        for key in _FIELDS:
            if key in fields and fields[key] is not None:
                record[key] = fields[key]
        record["pid"] = os.getpid()
        sys.audit(f"secure_import.{event}", record.get("module"), record.get("url"), outcome)
        try:
            if not self._ready:
                secure_dir(self.path.parent, what="audit log")
                self._ready = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
            try:
                self._acquire(fd)
                size = os.fstat(fd).st_size
                if self._tail is not None and self._tail[0] == size:
                    record["prev"] = self._tail[1]
                else:
                    last = _last_line(self.path)
                    record["prev"] = GENESIS if last is None else _line_hash(last)
                line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError("short write")
                digest = _line_hash(line)
                self._tail = (size + written, digest)
                _write_anchor(self.anchor, digest)
            finally:
                self._release(fd)
                os.close(fd)
        except (OSError, Timeout) as exc:
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
        return record

    def _acquire(self, fd: int) -> None:
        if fcntl is None:
            assert self._filelock is not None
            self._filelock.acquire()
            return
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Timeout(str(self.path)) from None
                time.sleep(0.0005)

    def _release(self, fd: int) -> None:
        if fcntl is None:
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


def _write_anchor(path: Path, digest: str) -> None:
    # A fixed-size overwrite in place: one syscall, no rename, on the hot path.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | _NOFOLLOW, 0o600)
    try:
        os.pwrite(fd, digest.encode() + b"\n", 0)
    finally:
        os.close(fd)


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


def verify_chain(path: Path) -> ChainReport:
    """Check every record's ``prev`` against the line before it, and the last
    line against the anchor."""
    anchor = _read_anchor(anchor_path(path))
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        if anchor is not None:
            return ChainReport(False, 0, 1, "the log is missing but its anchor says records "
                               "were written (deleted log)")
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
        expected = _line_hash(line)
        count += 1
    if anchor is not None and anchor != expected:
        return ChainReport(
            False,
            count,
            count + 1,
            "the log ends before the newest record written (lines removed at the end)",
        )
    return ChainReport(True, count)
