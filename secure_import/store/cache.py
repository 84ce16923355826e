"""Content-addressed store of verified bytes.

Invariants:

- only bytes whose sha256 was checked against a signed manifest are stored,
  under their own digest (``objects/ab/abcd...``), so a name can never point at
  other content;
- every read hashes the bytes again before returning them (THREATS L1); a file
  that fails is deleted and reported, and the caller fetches it anew;
- signed manifest envelopes are cached too, but they are re-verified by the
  caller on every use, like any other untrusted input;
- the cache is disposable: ``clear`` empties it, trust state lives elsewhere;
- a read-only cache (an image layer; ``readonly=True``, or a write that
  fails with ``EROFS``/``EACCES``/``EPERM``) is used as it is: nothing is
  created, written or deleted in it, a write that cannot happen is skipped
  and reported once through ``on_unwritable`` (the repository audits it),
  and the caller goes on with the verified bytes it holds in memory.  Reads
  are verified exactly as ever, so a read-only cache is never trusted more;
- ``clear`` deletes only what it recognises as its own (THREATS H3): the
  entries our stores create (:data:`OWN_ENTRIES`), each a real directory
  owned by the current user, never through a symlink; the cache directory
  itself only if it carries the marker (:data:`MARKER_NAME`, a standard
  ``CACHEDIR.TAG``) written when we created it.  Before deleting anything it
  checks that everything to delete can be deleted, so an unwritable cache is
  one clear error with nothing gone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator

from secure_import._frozen import Frozen
from secure_import.errors import LocalStateError, UnsafePermissionsError
from secure_import.store.fsutil import atomic_write, read_file, remove_tree, secure_dir

# The read and write paths of an import use strings and ``os``; pathlib and
# shutil are for listing and clearing the cache (the CLI).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "MARKER",
    "MARKER_NAME",
    "OWN_ENTRIES",
    "Cache",
    "CacheEntry",
    "ClearReport",
    "readonly_reason",
]

#: Written into a cache directory when we create it: the Cache Directory
#: Tagging convention (backup tools skip the directory), and our proof that
#: ``clear`` may remove the directory itself.
MARKER_NAME = "CACHEDIR.TAG"
MARKER_CONTENT = (
    b"Signature: 8a477f597d28d172789f06886806bc55\n"
    b"# This directory is a secure-import cache: verified copies, safe to delete.\n"
)
MARKER = (MARKER_NAME, MARKER_CONTENT)
#: Top-level entries of a cache directory that our stores create: objects and
#: metadata (here), the manifest memo (``memo.MEMO_DIR``), authenticated
#: bytecode (``bytecode.BYTECODE_DIR``) and materialised packages
#: (``materialise.MATERIALISED_DIR``).  Nothing else is ever deleted.
OWN_ENTRIES = ("objects", "metadata", "verified", "bytecode", "materialised")
#: Entries whose directories are read-only on purpose (materialised packages):
#: made writable again by :func:`remove_tree` when they are ours.
_READ_ONLY_ENTRIES = frozenset({"materialised"})
#: The audit log's witness (``Paths.audit_witness``): kept by ``clear``, it
#: is evidence about the log, not cached data.
WITNESS_DIR = "audit-witness"


class ClearReport(Frozen):
    """What :meth:`Cache.clear` did."""

    _fields = ("objects", "removed", "skipped", "root_removed")
    __slots__ = _fields

    objects: int
    removed: tuple[str, ...]
    #: Entries left alone, with why (a symlink, another owner, not ours).
    skipped: tuple[str, ...]
    root_removed: bool

    def __init__(
        self, objects: int, removed: tuple[str, ...], skipped: tuple[str, ...], root_removed: bool
    ) -> None:
        object.__setattr__(self, "objects", objects)
        object.__setattr__(self, "removed", removed)
        object.__setattr__(self, "skipped", skipped)
        object.__setattr__(self, "root_removed", root_removed)


class CacheEntry(Frozen):
    """One cached object: its digest, size and file."""

    _fields = ("sha256", "size", "path")
    __slots__ = _fields

    sha256: str
    size: int
    path: Path

    def __init__(self, sha256: str, size: int, path: Path) -> None:
        object.__setattr__(self, "sha256", sha256)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "path", path)


#: Errors that mean "this file system or directory does not let us write".
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def readonly_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means the cache cannot be written (``EROFS``, ``EACCES``,
    ``EPERM``, also under an :class:`UnsafePermissionsError` raised while
    creating a directory), or ``None`` for any other failure."""
    cause: BaseException | None = exc
    if isinstance(exc, UnsafePermissionsError):
        cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno in _READ_ONLY_ERRNOS:
        return f"{errno.errorcode.get(cause.errno, cause.errno)}: {cause.strerror}"
    return None


class Cache:
    """Verified-bytes store under one directory (checked 0700, ours).

    ``readonly``: never write (see the module docstring); ``on_unwritable``
    is called once, with the reason, the first time a write is skipped.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        readonly: bool = False,
        on_unwritable: Callable[[str], None] | None = None,
    ) -> None:
        #: The directory as a string: the import path uses ``os`` functions only.
        self._root = os.fspath(root)
        self._ready = False
        self.readonly = readonly
        #: Why writes are skipped (``None`` while the cache is writable).
        self.unwritable: str | None = "read-only by configuration" if readonly else None
        self._on_unwritable = on_unwritable
        self._reported = False

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    def _dir(self, *parts: str) -> str:
        if not self._ready:
            secure_dir(self._root, what="cache", marker=MARKER)
            self._ready = True
        path = os.path.join(self._root, *parts)
        secure_dir(path, what="cache")
        return path

    def _readable(self) -> bool:
        """Check the cache directory before a read; ``False`` when a
        read-only cache has none (nothing is created for a read)."""
        if not self._ready:
            if self.unwritable is not None and not os.path.lexists(self._root):
                return False
            secure_dir(self._root, what="cache", marker=MARKER)
            self._ready = True
        return True

    def _write(self, write: Callable[[], None]) -> bool:
        """Run ``write`` unless the cache is read-only; a failure that means
        read-only marks it so.  True if written."""
        if self.unwritable is None:
            try:
                write()
                return True
            except (OSError, UnsafePermissionsError) as exc:
                reason = readonly_reason(exc)
                if reason is None:
                    raise
                self.unwritable = reason
        if not self._reported:
            self._reported = True
            if self._on_unwritable is not None:
                self._on_unwritable(self.unwritable or "read-only")
        return False

    def _object_path(self, sha256: str) -> str:
        return os.path.join(self._root, "objects", sha256[:2], sha256)

    def get(self, sha256: str) -> tuple[bytes | None, bool]:
        """Return ``(bytes, corrupt)``: the verified bytes, or None.

        ``corrupt`` is True when a file was there but no longer matched its
        digest; it has been deleted.
        """
        if not self._readable():
            return None, False
        path = self._object_path(sha256)
        data = read_file(path)
        if data is None:
            return None, False
        if hashlib.sha256(data).hexdigest() != sha256:
            if self.unwritable is None:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return None, True
        return data, False

    def put(self, sha256: str, data: bytes) -> bool:
        """Store bytes already verified against ``sha256`` (re-checked here);
        False if the cache is read-only (nothing written).

        Raises:
            OSError: writing failed for another reason (a full disk).
        """
        if hashlib.sha256(data).hexdigest() != sha256:  # defence in depth
            raise AssertionError("refusing to cache bytes that do not match their digest")

        def write() -> None:
            atomic_write(os.path.join(self._dir("objects", sha256[:2]), sha256), data)

        return self._write(write)

    def get_metadata(self, repo_id: str, name: str) -> bytes | None:
        """Cached, still-untrusted metadata (e.g. a manifest envelope)."""
        if not self._readable():
            return None
        return read_file(os.path.join(self._root, "metadata", repo_id, name))

    def has_metadata(self, repo_id: str, name: str) -> bool:
        """Whether metadata ``name`` is cached for ``repo_id`` (a hint only:
        nothing is read, checked or created)."""
        return os.path.isfile(os.path.join(self._root, "metadata", repo_id, name))

    def put_metadata(self, repo_id: str, name: str, data: bytes) -> bool:
        """Store untrusted metadata; False if the cache is read-only."""

        def write() -> None:
            atomic_write(os.path.join(self._dir("metadata", repo_id), name), data)

        return self._write(write)

    def object_path(self, sha256: str) -> Path:
        """Where the object ``sha256`` is kept (it may not exist)."""
        from pathlib import Path

        return Path(self._object_path(sha256))

    def has(self, sha256: str) -> bool:
        """Whether an object file is there (not checked: :meth:`get` does)."""
        return os.path.isfile(self._object_path(sha256))

    def repo_ids(self) -> list[str]:
        """The repository ids with cached metadata (real directories only)."""
        base = os.path.join(self._root, "metadata")
        try:
            items = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            return []
        return [e.name for e in items if e.is_dir(follow_symlinks=False)]

    def drop_metadata(self, repo_id: str, name: str) -> bool:
        """Delete cached metadata found damaged (absent already is fine);
        False if the cache is read-only (nothing deleted).

        Raises:
            OSError: it could not be deleted for another reason.
        """

        def write() -> None:
            try:
                (self.root / "metadata" / repo_id / name).unlink()
            except FileNotFoundError:
                pass

        return self._write(write)

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
        """:meth:`clear_report`, returning the number of objects removed."""
        return self.clear_report().objects

    def clear_report(self) -> ClearReport:
        """Delete the entries of the cache that are ours (see the module
        docstring); the directory itself only if we created it.

        Raises:
            LocalStateError: something to delete cannot be deleted (not
                writable, or the cache directory is not a real directory);
                nothing was deleted.  Or deleting failed half way (a race):
                the message says so.
        """
        self._ready = False
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            return ClearReport(0, (), (), False)
        except OSError as exc:
            raise _clear_error(self.root, f"cannot inspect it: {exc}") from exc
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise _clear_error(
                self.root,
                "it is a symlink or not a directory; nothing was deleted "
                "(a cache is never cleared through a link)",
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise _clear_error(self.root, f"it is owned by uid {info.st_uid}; nothing was deleted")
        mine: list[Path] = []
        skipped: list[str] = []
        for name in OWN_ENTRIES:
            entry = self.root / name
            try:
                entry_info = os.lstat(entry)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(entry_info.st_mode) or not stat.S_ISDIR(entry_info.st_mode):
                skipped.append(f"{entry} (a symlink or not a directory: not followed)")
            elif hasattr(os, "getuid") and entry_info.st_uid != os.getuid():
                skipped.append(f"{entry} (owned by uid {entry_info.st_uid})")
            else:
                mine.append(entry)
        marker = self.root / MARKER_NAME
        ours = _is_marker(marker)
        # Everything checked before anything is deleted: one error, nothing gone.
        _check_deletable(self.root, mine, with_root=ours)
        count = sum(1 for _ in self.entries()) if (self.root / "objects") in mine else 0
        removed: list[str] = []
        try:
            for entry in mine:
                if entry.name in _READ_ONLY_ENTRIES:
                    remove_tree(entry)
                else:
                    import shutil  # clearing only: not on the import path

                    shutil.rmtree(entry)
                removed.append(str(entry))
            root_removed = False
            if ours:
                marker.unlink()
                try:
                    os.rmdir(self.root)  # only if nothing else is left in it
                    root_removed = True
                except OSError:
                    left = sorted(set(os.listdir(self.root)) - {WITNESS_DIR})
                    if left:
                        skipped.append(
                            f"{self.root} (holds entries that are not ours: {', '.join(left)})"
                        )
            elif not skipped:
                leftovers = sorted(set(os.listdir(self.root)) - {WITNESS_DIR})
                if leftovers:
                    skipped.append(
                        f"{self.root} (no {MARKER_NAME}: not created by secure-import, kept "
                        f"with {len(leftovers)} entries that are not ours)"
                    )
        except OSError as exc:
            raise _clear_error(
                self.root,
                f"deleting failed part way ({exc}); removed so far: {', '.join(removed) or 'none'}",
            ) from exc
        return ClearReport(count, tuple(removed), tuple(skipped), root_removed)

    def total_size(self) -> int:
        return sum(entry.size for entry in self.entries())

    def __repr__(self) -> str:
        return f"Cache({self._root!r})"


def _clear_error(root: Path, why: str) -> LocalStateError:
    return LocalStateError(
        f"cannot clear the cache {root}: {why}", check="cache-clear", got=str(root)
    )


def _is_marker(path: Path) -> bool:
    """The marker we write: a regular file (not a link) with our content."""
    data = read_file(path)
    return data is not None and data.startswith(MARKER_CONTENT.split(b"\n", 1)[0])


def _owned(path: str) -> bool:
    """A real directory of ours (we may make it writable to delete it)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid())


def _check_deletable(root: Path, entries: list[Path], *, with_root: bool) -> None:
    """Raise before deleting anything if some directory to delete from is not
    writable by us (``os.access``: the kernel's answer for this process)."""
    writable = os.W_OK | os.X_OK
    problems: list[str] = []
    if (entries or with_root) and not os.access(root, writable):
        problems.append(str(root))
    for entry in entries:
        read_only = entry.name in _READ_ONLY_ENTRIES
        for directory, subdirs, _files in os.walk(entry, followlinks=False):
            if not os.access(directory, writable | os.R_OK) and not (
                read_only and _owned(directory)
            ):
                problems.append(directory)
            subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(directory, d))]
            if len(problems) > 5:
                break
    if problems:
        raise _clear_error(
            root,
            "these directories are not writable, so nothing was deleted: "
            + ", ".join(problems[:5])
            + (" ..." if len(problems) > 5 else ""),
        )
