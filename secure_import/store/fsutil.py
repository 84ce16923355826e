"""Careful file-system primitives shared by the cache, the state and the audit log.

Invariants (THREATS L3, L4):

- a directory we use is a real directory (not a symlink), owned by the current
  user, and not writable by group or others; we create it 0700, and every
  missing parent we create as well;
- no directory above one we use lets another user rename it away: each is
  owned by the current user or root, and not writable by group or others
  unless sticky with our entry owned by us or root (THREATS H7);
- files are created 0600 with ``O_NOFOLLOW``, so a planted symlink is never
  followed or written through;
- a file is replaced atomically (temp file in the same directory, then
  ``os.replace``), so readers see the old or the new content, never half.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator, Sequence

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from secure_import.errors import UnsafePermissionsError

__all__ = [
    "atomic_write",
    "check_ancestors",
    "exclusive_lock",
    "make_temp",
    "read_file",
    "remove_tree",
    "secure_dir",
    "trust_problem",
    "writable_by_others",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_CHUNK = 1 << 16
#: A temporary file is created exclusively, 0600, never through a symlink
#: (what ``tempfile.mkstemp`` does; that module would import ``random``,
#: ``shutil`` and their compression modules into every process).
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_TEMP_TRIES = 100

# Paths are handled as strings with ``os.path``: pathlib is not imported by a
# process that only reads its warm cache.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    _P = TypeVar("_P", bound="str | os.PathLike[str]")


def _name(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _parents(path: str) -> Iterator[str]:
    """``path``'s ancestors, nearest first (as ``PurePath.parents``)."""
    current = path
    while True:
        parent = os.path.dirname(current)
        if parent == current or not parent:
            return
        yield parent
        current = parent


def secure_dir(path: _P, *, what: str, marker: tuple[str, bytes] | None = None) -> _P:
    """Create ``path`` if missing and check it is safe to use.

    Every directory level this call creates is made 0700 (not only the last:
    with a umask of 002 ``mkdir -p`` would leave ``~/.local/state`` 0775).
    ``marker`` (a file name and its bytes) is written into ``path`` when this
    call created it, so that later code can tell a directory we made from
    one we were merely pointed at.

    Checks (THREATS L3, H7): ``path`` is a real directory owned by the current
    user and not writable by group or others, and no directory above it lets
    another user rename it away (see :func:`check_ancestors`).

    Raises:
        UnsafePermissionsError: it is a symlink, not a directory, owned by
            another user, writable by group/others, or under a parent that
            another user can write.
    """
    created = False
    try:
        try:
            # Nearly always there already: one lstat, not a failing mkdir, its
            # exception and a stat (this runs several times per import).
            info = os.lstat(path)
        except FileNotFoundError:
            created = _make_dirs(_name(path))
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
    check_ancestors(path, what=what)
    if created and marker is not None:
        name, data = marker
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
            fd = os.open(os.path.join(path, name), flags, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError:
            pass  # another process created the directory and its marker first
    return path


def _make_dirs(path: str) -> bool:
    """Create ``path`` and every missing parent, each level 0700; True if
    ``path`` itself was created by this call."""
    missing: list[str] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current or not parent:
            break
        current = parent
    created = False
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
            created = directory == path
        except FileExistsError:
            created = False  # made concurrently by another process: checked as found
    return created


#: Directories whose ancestors passed :func:`check_ancestors` in this process
#: (the walk costs one ``lstat`` per level; it is done once per directory).
_SAFE_ANCESTRY: set[str] = set()


def _trusted_owner(uid: int) -> bool:
    return not hasattr(os, "getuid") or uid in (0, os.getuid())


_PRIVATE_GROUPS: dict[int, bool] = {}


def _private_group(gid: int) -> bool:
    """Whether ``gid`` is the current user's own private group (the
    user-private-group scheme Debian and Ubuntu use with umask 002): named
    like the user, the user's primary group, no other members.  Group write
    on such a directory gives nobody else anything."""
    if gid in _PRIVATE_GROUPS:
        return _PRIVATE_GROUPS[gid]
    private = False
    try:
        import grp
        import pwd

        user = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(gid)
        private = (
            user.pw_gid == gid
            and group.gr_name == user.pw_name
            and all(member == user.pw_name for member in group.gr_mem)
        )
    except (ImportError, KeyError, OSError):
        private = False
    _PRIVATE_GROUPS[gid] = private
    return private


def writable_by_others(info: os.stat_result) -> bool:
    """Whether someone other than the owner may write the file or directory
    ``info`` describes: other-write, or group-write by a group that is not the
    current user's private group."""
    mode = info.st_mode
    return bool(mode & 0o002) or bool(mode & 0o020 and not _private_group(info.st_gid))


def trust_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a configuration file at ``path`` cannot be trusted (THREATS H1), or
    ``None``: it is owned by another user than the current one or root,
    writable by others, or under a directory another user could write or
    rename (:func:`check_ancestors`'s rule)."""
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows
        return None
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except OSError as exc:
        return f"cannot inspect it: {exc.strerror or exc}"
    if stat.S_ISLNK(link.st_mode) and not _trusted_owner(link.st_uid):
        return f"it is a symlink owned by uid {link.st_uid}"
    if not _trusted_owner(info.st_uid):
        return f"it is owned by uid {info.st_uid}, not by you (uid {os.getuid()}) or root"
    if writable_by_others(info):
        return f"it is writable by others ({stat.filemode(info.st_mode)})"
    try:
        check_ancestors(os.path.dirname(os.path.realpath(path)), what="configuration", _self=True)
    except UnsafePermissionsError as exc:
        return f"{exc.detail} ({exc.got})"
    return None


def check_ancestors(path: str | os.PathLike[str], *, what: str, _self: bool = False) -> None:
    """Refuse ``path`` if another user could rename or replace it (THREATS H7).

    For each directory ``P`` above ``path`` (after resolving symlinks) and its
    entry ``C`` on the way down: ``P`` is owned by the current user or root,
    and if ``P`` is writable by group or others it has the sticky bit and
    ``C`` is owned by the current user or root -- the rule the kernel itself
    applies before letting anyone rename or delete ``C`` (``/tmp`` passes,
    a 0775 ``~/.local`` does not, unless its group is the user's own private
    group).  A symlink on the way is followed, and
    must itself be owned by the current user or root.

    Raises:
        UnsafePermissionsError: naming the weak directory and its mode.
    """
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows: ACLs, not modes
        return
    if _self:
        # ``path`` is a directory holding a file we are about to trust: it
        # must pass the parent rule itself (owner, no write by others).
        info = os.stat(path)
        if not _trusted_owner(info.st_uid) or (
            writable_by_others(info) and not info.st_mode & stat.S_ISVTX
        ):
            raise UnsafePermissionsError(
                f"the {what} file is in a directory another user can write",
                check="directory-parent",
                got=f"{stat.filemode(info.st_mode)} uid {info.st_uid} {path}",
            )
    key = os.fspath(path)
    if key in _SAFE_ANCESTRY:
        return
    absolute = os.path.abspath(key)
    real = os.path.realpath(absolute)
    if real != absolute:
        # Symlinks on the lexical path: whoever owns one decides where it points.
        for component in (absolute, *_parents(absolute)):
            try:
                info = os.lstat(component)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode) and not _trusted_owner(info.st_uid):
                raise UnsafePermissionsError(
                    f"the {what} directory is reached through a symlink owned by another user",
                    check="directory-parent",
                    expected="symlinks owned by you or root",
                    got=f"uid {info.st_uid} owns {component}",
                )
    child = real
    try:
        child_info = os.lstat(child)
        for parent in _parents(child):
            parent_key = parent
            info = os.lstat(parent)
            if not _trusted_owner(info.st_uid):
                raise UnsafePermissionsError(
                    f"the {what} directory is under a directory owned by another user, "
                    "who can rename it away",
                    check="directory-parent",
                    expected="parents owned by you or root",
                    got=f"uid {info.st_uid} owns {parent} (above {path})",
                )
            if writable_by_others(info) and not (
                info.st_mode & stat.S_ISVTX and _trusted_owner(child_info.st_uid)
            ):
                raise UnsafePermissionsError(
                    f"the {what} directory is under a directory that others can write "
                    f"(without the sticky bit), so they can rename it away; "
                    f"run: chmod go-w {parent}",
                    check="directory-parent",
                    expected="parents not writable by group or others, or sticky (like /tmp)",
                    got=f"{stat.filemode(info.st_mode)} {parent} (above {path})",
                )
            if parent_key in _SAFE_ANCESTRY:
                break
            child, child_info = parent, info
    except OSError as exc:
        raise UnsafePermissionsError(
            f"cannot inspect the directories above the {what} directory: {exc}",
            check="directory-parent",
            got=str(path),
        ) from exc
    _SAFE_ANCESTRY.add(key)
    if real != key:
        _SAFE_ANCESTRY.add(real)


def make_temp(directory: str | os.PathLike[str]) -> tuple[int, str]:
    """Create a new, empty temporary file in ``directory``: ``(fd, name)``.

    Mode 0600, exclusive, never through a symlink, with an unpredictable name.
    """
    base = os.fspath(directory)
    for _ in range(_TEMP_TRIES):
        name = os.path.join(base, f".tmp-{os.urandom(8).hex()}.part")
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {base}")


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Sequence[bytes], *, durable: bool = False
) -> None:
    """Write ``data`` (or its pieces, in order) to ``path`` atomically with mode 0600.

    ``durable`` adds an fsync before the rename: used for trust state, skipped
    for cache objects (a torn cache file fails its hash and is fetched again).
    """
    fd, tmp = make_temp(os.path.dirname(os.fspath(path)) or ".")
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


def read_file(path: str | os.PathLike[str]) -> bytes | None:
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


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], *, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created 0600, never
    through a symlink) for the ``with`` block: serialises read-modify-write
    of a state file between processes.

    Raises:
        OSError: the lock file cannot be opened, or the lock was not obtained
            within ``timeout`` seconds (``TimeoutError``).
    """
    if fcntl is None:  # pragma: no cover - Windows
        from filelock import FileLock

        with FileLock(os.fspath(path), timeout=timeout):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout} s") from None
                time.sleep(0.001)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` and everything under it, read-only directories included.

    A symlink (or any non-directory) at ``path`` is unlinked, never followed;
    below it, :func:`shutil.rmtree` does not follow links either.  Only real
    directories found by ``lstat``/``scandir`` are made writable first.

    Raises:
        OSError: something could not be removed.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    _make_writable(os.fspath(path))
    import shutil  # clearing the cache only: not on the import path

    shutil.rmtree(path)


def _make_writable(directory: str) -> None:
    os.chmod(directory, 0o700)
    with os.scandir(directory) as listing:
        for item in listing:
            if item.is_dir(follow_symlinks=False):
                _make_writable(item.path)
