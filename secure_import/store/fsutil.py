"""Careful file-system primitives shared by the cache, the state and the audit log.

Invariants (THREATS L3, L4):

- a directory we use is a real directory (not a symlink), owned by the current
  user, and not writable by group or others; we create it 0700;
- files are created 0600 with ``O_NOFOLLOW``, so a planted symlink is never
  followed or written through;
- a file is replaced atomically (temp file in the same directory, then
  ``os.replace``), so readers see the old or the new content, never half.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from secure_import.errors import UnsafePermissionsError

__all__ = ["atomic_write", "read_file", "secure_dir"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_CHUNK = 1 << 16


def secure_dir(path: Path, *, what: str) -> Path:
    """Create ``path`` (0700) if missing and check it is safe to use.

    Raises:
        UnsafePermissionsError: it is a symlink, not a directory, owned by
            another user, or writable by group/others.
    """
    try:
        try:
            # Nearly always there already: one lstat, not a failing mkdir, its
            # exception and a stat (this runs several times per import).
            info = os.lstat(path)
        except FileNotFoundError:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(path)
    except OSError as exc:
        raise UnsafePermissionsError(
            f"cannot create or inspect the {what} directory: {exc}",
            check="directory",
            got=str(path),
        ) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePermissionsError(
            f"the {what} directory is a symlink or not a directory",
            check="directory-type",
            expected="a real directory",
            got=str(path),
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafePermissionsError(
            f"the {what} directory is owned by another user",
            check="directory-owner",
            expected=os.getuid(),
            got=f"uid {info.st_uid} ({path})",
        )
    if info.st_mode & 0o022:
        raise UnsafePermissionsError(
            f"the {what} directory is writable by group or others",
            check="directory-mode",
            expected="no group/other write (0700)",
            got=f"{stat.filemode(info.st_mode)} ({path})",
        )
    return path


def atomic_write(path: Path, data: bytes | Sequence[bytes], *, durable: bool = False) -> None:
    """Write ``data`` (or its pieces, in order) to ``path`` atomically with mode 0600.

    ``durable`` adds an fsync before the rename: used for trust state, skipped
    for cache objects (a torn cache file fails its hash and is fetched again).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            for piece in [data] if isinstance(data, bytes) else data:
                handle.write(piece)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_file(path: Path) -> bytes | None:
    """Read a regular file without following a final symlink; ``None`` if absent.

    A symlink, FIFO or other non-regular file is treated as absent (and left
    alone): we never read through something we did not write.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # ELOOP: a symlink was planted there
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        # os.read straight into bytes: no file object and no second buffer
        # (this runs for every cache, memo and pack file a warm import opens).
        # Asking for one byte more than fstat saw tells "all of it" without a
        # second read (which would allocate its buffer only to find EOF).
        size = info.st_size
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data
        parts = [data]  # grown since the fstat, or a short read: go on to EOF
        while chunk := os.read(fd, _READ_CHUNK):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)
