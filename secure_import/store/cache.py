"""Content-addressed store of verified bytes.

Invariants:

- only bytes whose sha256 was checked against a signed manifest are stored,
  under their own digest (``objects/ab/abcd...``), so a name can never point at
  other content;
- every read hashes the bytes again before returning them (THREATS L1); a file
  that fails is deleted and reported, and the caller fetches it anew;
- signed manifest envelopes are cached too, but they are re-verified by the
  caller on every use, like any other untrusted input;
- the cache is disposable: ``clear`` removes it, trust state lives elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from secure_import.store.fsutil import atomic_write, read_file, secure_dir

__all__ = ["Cache", "CacheEntry"]


@dataclass(frozen=True)
class CacheEntry:
    sha256: str
    size: int
    path: Path


class Cache:
    """Verified-bytes store under one directory (checked 0700, ours)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ready = False

    def _dir(self, *parts: str) -> Path:
        if not self._ready:
            secure_dir(self.root, what="cache")
            self._ready = True
        path = self.root.joinpath(*parts)
        secure_dir(path, what="cache")
        return path

    def _object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def get(self, sha256: str) -> tuple[bytes | None, bool]:
        """Return ``(bytes, corrupt)``: the verified bytes, or None.

        ``corrupt`` is True when a file was there but no longer matched its
        digest; it has been deleted.
        """
        if not self._ready:
            secure_dir(self.root, what="cache")
            self._ready = True
        path = self._object_path(sha256)
        data = read_file(path)
        if data is None:
            return None, False
        if hashlib.sha256(data).hexdigest() != sha256:
            try:
                path.unlink()
            except OSError:
                pass
            return None, True
        return data, False

    def put(self, sha256: str, data: bytes) -> None:
        """Store bytes already verified against ``sha256`` (re-checked here)."""
        if hashlib.sha256(data).hexdigest() != sha256:  # defence in depth
            raise AssertionError("refusing to cache bytes that do not match their digest")
        directory = self._dir("objects", sha256[:2])
        atomic_write(directory / sha256, data)

    def get_metadata(self, repo_id: str, name: str) -> bytes | None:
        """Cached, still-untrusted metadata (e.g. a manifest envelope)."""
        if not self._ready:
            secure_dir(self.root, what="cache")
            self._ready = True
        return read_file(self.root / "metadata" / repo_id / name)

    def put_metadata(self, repo_id: str, name: str, data: bytes) -> None:
        atomic_write(self._dir("metadata", repo_id) / name, data)

    def entries(self) -> Iterator[CacheEntry]:
        base = self.root / "objects"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            if not sub.is_dir() or sub.is_symlink():
                continue
            for item in sorted(sub.iterdir()):
                if item.is_file() and not item.is_symlink() and not item.name.startswith("."):
                    yield CacheEntry(item.name, item.stat().st_size, item)

    def clear(self) -> int:
        """Delete everything in the cache directory; return the number of objects removed."""
        count = sum(1 for _ in self.entries())
        if self.root.is_symlink():
            self.root.unlink()
        elif self.root.is_dir():
            shutil.rmtree(self.root)
        self._ready = False
        return count

    def total_size(self) -> int:
        return sum(entry.size for entry in self.entries())

    def __repr__(self) -> str:
        return f"Cache({os.fspath(self.root)!r})"
