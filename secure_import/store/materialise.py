"""Materialised packages: verified files written to a private directory, so
``__file__`` and ``__path__`` are real paths for code that opens its own files.

Many libraries find their templates, language files or style sheets with
``open(os.path.join(os.path.dirname(__file__), ...))`` or list
``os.listdir(os.path.dirname(__file__))``, often at import time.  With an
``https://`` ``__file__`` that cannot work.  For a repository (or package)
that opts in, the finder asks this store for a directory holding exactly the
package's signed files and points ``__file__``/``__path__`` into it.  Code
never runs from these files: the loader executes the verified in-memory bytes
(or authenticated bytecode of them) as in URL mode.  Only code that opens files
itself reads them, and it reads them after our check (SECURITY.md states the
exposure).

Layout: ``<cache>/materialised/<repo id>/<manifest digest[:32]>/<top>/...``
(or ``<top>.py`` for a single-module distribution), keyed by the sha256 of the
signed manifest envelope, so a new release gets a new directory and a running
process of the old one keeps its files (trees of other manifests are pruned a
day after they last changed).

Invariants:

- every file written comes from bytes the caller verified against the signed
  manifest; the store re-checks each piece's sha256 and length before writing
  it (defence in depth), and never writes a path the manifest did not list;
- every directory on the way is ours (owner, not writable by group or others,
  not a symlink: :func:`~secure_import.store.fsutil.secure_dir`); files are
  created with ``O_NOFOLLOW | O_EXCL`` in a fresh private temporary directory
  and made read-only (``0400``), package directories ``0500``, before the
  temporary directory is renamed into place in one step (readers see no tree or
  a whole tree, never half of one);
- a tree is re-verified before a process uses it (:meth:`MaterialiseStore.ensure`):
  the exact set of names (no extra file, no symlink, no special file), every
  file owned by us, read-only and matching its signed sha256 and length.  Any
  difference and the whole package tree is moved aside, deleted and written
  again from verified bytes; the caller audits the replacement with the reason.
  The check reads and hashes every file of the package once per process
  (~1 ms per MB on this machine's class of hardware, plus one ``open`` per
  file): hashing was chosen over sealed ``stat`` stamps because it needs no
  argument about which metadata an attacker can reset;
- nothing here raises a bare ``OSError``: failures are
  :class:`~secure_import.errors.MaterialiseError` naming the path, or
  :class:`~secure_import.errors.UnsafePermissionsError` for a directory that
  is not ours.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from secure_import.errors import MaterialiseError
from secure_import.store.fsutil import remove_tree, secure_dir
from secure_import.verify.manifest import FileEntry

__all__ = ["FILE_MODE", "PACKAGE_DIR_MODE", "Ensured", "MaterialiseStore", "package_entries"]

#: Mode of a materialised file: read-only for its owner, nothing for others.
FILE_MODE = 0o400
#: Mode of a materialised package directory once complete: no new files.
PACKAGE_DIR_MODE = 0o500
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CHUNK = 1 << 20
_SUBDIR = "materialised"
#: Trees of other manifests are deleted once unchanged for this long (seconds).
PRUNE_AFTER = 24 * 3600.0
#: Length of the manifest digest used as a directory name (128 bits).
_KEY_CHARS = 32


def package_entries(files: Mapping[str, FileEntry], top: str) -> list[FileEntry]:
    """Every signed file of top-level name ``top`` (code and data), sorted."""
    prefix = f"{top}/"
    return sorted(
        (e for p, e in files.items() if p.startswith(prefix) or p == f"{top}.py"),
        key=lambda e: e.path,
    )


@dataclass(frozen=True)
class Ensured:
    """What :meth:`MaterialiseStore.ensure` did.

    ``root`` holds ``<top>/`` or ``<top>.py``; ``action`` is ``"verified"``
    (the tree on disk was intact), ``"written"`` (there was none) or
    ``"replaced"`` (it failed the check: ``problem`` says how).
    """

    root: Path
    action: str
    problem: str | None = None


class MaterialiseStore:
    """Materialised trees of one repository under its cache directory."""

    def __init__(self, cache_dir: Path, repo_id: str, *, readonly: bool = False) -> None:
        self.cache_dir = Path(cache_dir)
        self.base = self.cache_dir / _SUBDIR / repo_id
        #: A read-only cache: a tree is used only if it is there and intact.
        self.readonly = readonly

    def root_for(self, manifest_digest: str) -> Path:
        """The directory holding the packages of one manifest (not created)."""
        return self.base / manifest_digest[:_KEY_CHARS]

    def ensure(
        self,
        manifest_digest: str,
        top: str,
        entries: Sequence[FileEntry],
        read: Callable[[Sequence[FileEntry]], Mapping[str, bytes]],
    ) -> Ensured:
        """A verified tree of ``top`` for the manifest ``manifest_digest``.

        ``read`` returns verified bytes by path for the entries asked (called
        only when something must be written).

        Raises:
            MaterialiseError: the tree could not be written.
            UnsafePermissionsError: a directory on the way is not ours.
            SecureImportError: whatever ``read`` raises (nothing is written).
        """
        if not entries:
            raise MaterialiseError(
                f"the signed manifest lists no file of {top!r}", check="materialise", got=top
            )
        if self.readonly:
            root = self.root_for(manifest_digest)
            problem = _check_tree(root, top, entries)
            if problem is None:
                return Ensured(root, "verified")
            raise MaterialiseError(
                f"the cache is read-only and holds no intact materialised copy of {top!r} "
                f"({problem}); warm the cache (secure-import cache warm) where it is writable",
                check="materialise-readonly",
                got=str(root),
            )
        root = self._root(manifest_digest)
        target = root / top if entries[0].path != f"{top}.py" else root / f"{top}.py"
        problem = _check_tree(root, top, entries)
        if problem is None:
            return Ensured(root, "verified")
        existed = os.path.lexists(target)
        data = read(entries)
        for entry in entries:
            piece = data.get(entry.path)
            if (
                piece is None
                or len(piece) != entry.length
                or hashlib.sha256(piece).hexdigest() != entry.sha256
            ):
                raise AssertionError("refusing to materialise bytes that were not verified")
        self._write(root, top, entries, data, replace=existed)
        again = _check_tree(root, top, entries)
        if again is not None:
            raise MaterialiseError(
                f"the materialised copy of {top!r} does not verify right after writing it: {again}",
                check="materialise-verify",
                got=str(target),
            )
        return Ensured(root, "replaced" if existed else "written", problem if existed else None)

    def prune(self, keep: str, *, older_than: float = PRUNE_AFTER) -> int:
        """Delete the trees of other manifests of this repository that were
        last changed more than ``older_than`` seconds ago; return how many.

        A process still running an older release keeps its files for that
        long.  Only directories named like a digest we would have made are
        touched.
        """
        removed = 0
        now = time.time()
        keep_name = keep[:_KEY_CHARS]
        try:
            names = os.listdir(self.base)
        except OSError:
            return 0
        for name in names:
            if name == keep_name or not _is_key(name):
                continue
            try:
                if now - os.lstat(self.base / name).st_mtime < older_than:
                    continue
                remove_tree(self.base / name)
                removed += 1
            except OSError:
                pass
        return removed

    # -- internals ------------------------------------------------------------

    def _root(self, manifest_digest: str) -> Path:
        secure_dir(self.cache_dir, what="cache")
        secure_dir(self.base.parent, what="materialised")
        secure_dir(self.base, what="materialised")
        return secure_dir(self.root_for(manifest_digest), what="materialised")

    def _write(
        self,
        root: Path,
        top: str,
        entries: Sequence[FileEntry],
        data: Mapping[str, bytes],
        *,
        replace: bool,
    ) -> None:
        """Write a whole new tree beside the old one, then swap it in."""
        tag = secrets.token_hex(8)
        single = entries[0].path == f"{top}.py"
        name = f"{top}.py" if single else top
        temp = root / f".tmp-{tag}-{name}"
        try:
            if single:
                _write_file(temp, data[entries[0].path])
            else:
                temp.mkdir(mode=0o700)
                for entry in entries:
                    rel = entry.path[len(top) + 1 :]
                    parent = temp
                    for part in rel.split("/")[:-1]:
                        parent = parent / part
                        if not parent.is_dir():
                            parent.mkdir(mode=0o700)
                    _write_file(parent / rel.rsplit("/", 1)[-1], data[entry.path])
                _seal_dirs(temp)
            if replace:
                self._discard(root, name, tag)
            try:
                os.rename(temp, root / name)
            except OSError:
                # Another process put an intact tree there first (ENOTEMPTY,
                # EEXIST): keep theirs, the caller checks it again.
                if _check_tree(root, top, entries) is not None:
                    raise
                remove_tree(temp)
        except OSError as exc:
            try:
                remove_tree(temp)
            except OSError:
                pass
            raise MaterialiseError(
                f"cannot write the materialised copy of {top!r}: {exc}",
                check="materialise-write",
                got=str(root / name),
            ) from exc

    @staticmethod
    def _discard(root: Path, name: str, tag: str) -> None:
        """Move a failed tree aside (one rename), then delete it."""
        aside = root / f".old-{tag}-{name}"
        try:
            os.rename(root / name, aside)
        except FileNotFoundError:
            return  # another process already moved it
        remove_tree(aside)


def _is_key(name: str) -> bool:
    return len(name) == _KEY_CHARS and all(c in "0123456789abcdef" for c in name)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _seal_dirs(top_dir: Path) -> None:
    """Make every directory of a freshly written tree read-only, deepest first."""
    for current, dirs, _files in os.walk(top_dir, topdown=False):
        for name in dirs:
            os.chmod(os.path.join(current, name), PACKAGE_DIR_MODE)
    os.chmod(top_dir, PACKAGE_DIR_MODE)


def check_tree(root: Path, top: str, entries: Sequence[FileEntry]) -> str | None:
    """What is wrong with the materialised tree of ``top`` under ``root``
    (``"missing"`` if absent), or ``None``; changes nothing."""
    return _check_tree(root, top, entries)


def _check_tree(root: Path, top: str, entries: Sequence[FileEntry]) -> str | None:
    """``None`` if the tree of ``top`` under ``root`` is exactly the signed
    files, ours and read-only; else what is wrong (for the audit record)."""
    single = entries[0].path == f"{top}.py"
    if single:
        return _check_file(root / f"{top}.py", entries[0])
    top_dir = root / top
    try:
        info = os.lstat(top_dir)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"{top}: {exc.strerror or exc}"
    problem = _check_dir(top_dir, info, top)
    if problem is not None:
        return problem
    expected = {e.path: e for e in entries}
    seen: set[str] = set()
    stack = [(top_dir, top)]
    while stack:
        directory, rel = stack.pop()
        try:
            with os.scandir(directory) as listing:
                items = list(listing)
        except OSError as exc:
            return f"{rel}: cannot list ({exc.strerror or exc})"
        for item in items:
            path = f"{rel}/{item.name}"
            try:
                item_info = item.stat(follow_symlinks=False)
            except OSError as exc:
                return f"{path}: {exc.strerror or exc}"
            if stat.S_ISDIR(item_info.st_mode):
                problem = _check_dir(Path(item.path), item_info, path)
                if problem is not None:
                    return problem
                stack.append((Path(item.path), path))
                continue
            entry = expected.get(path)
            if entry is None:
                return f"{path}: not a signed file of this package"
            problem = _check_file(Path(item.path), entry)
            if problem is not None:
                return problem
            seen.add(path)
    missing = sorted(set(expected) - seen)
    if missing:
        return f"{missing[0]}: missing"
    return None


def _check_dir(path: Path, info: os.stat_result, rel: str) -> str | None:
    if not stat.S_ISDIR(info.st_mode):
        return f"{rel}: a symlink or not a directory"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{rel}: owned by uid {info.st_uid}"
    if info.st_mode & 0o222:
        return f"{rel}: directory writable ({stat.filemode(info.st_mode)})"
    return None


def _check_file(path: Path, entry: FileEntry) -> str | None:
    """Open without following a symlink, then check owner, mode, length, sha256
    on that one descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return f"{entry.path}: missing"
    except OSError as exc:
        return f"{entry.path}: {exc.strerror or exc} (a symlink?)"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return f"{entry.path}: not a regular file"
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return f"{entry.path}: owned by uid {info.st_uid}"
        if info.st_mode & 0o222:
            return f"{entry.path}: writable ({stat.filemode(info.st_mode)})"
        if info.st_size != entry.length:
            return f"{entry.path}: {info.st_size} bytes, signed {entry.length}"
        digest = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != entry.sha256:
            return f"{entry.path}: sha256 {digest.hexdigest()}, signed {entry.sha256}"
    except OSError as exc:
        return f"{entry.path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    return None
