"""``importlib.resources`` over the files a signed manifest lists.

A remote package's data files are reachable exactly as local ones are:
``files(pkg)`` returns a :class:`RemoteTraversable`, and the stdlib builds
``read_text``/``read_binary``/``open_text``/``contents``/``is_resource`` and
``as_file`` on top of it (``as_file`` writes the verified bytes to a private
temporary file, since a URL is not a path).

Invariants:

- the directory tree is derived from the signed manifest only; a name the
  manifest does not list does not exist (no request is made for it);
- every byte handed out went through ``Repository.source`` and so matched
  its signed sha256 and length (from the cache, re-hashed, or fetched);
- ``..`` and absolute paths are refused: a traversable never leaves the
  repository's listed tree;
- ``os.fspath(traversable)`` (``Path(files(pkg) / "x")``, ``open(...)``)
  materialises verified bytes once into a private ``0700`` temporary
  directory removed at exit, because libraries use ``files()`` results as
  filesystem paths; ``str()`` stays the https URL;
- the tree index is built once per manifest, so walking hundreds of small data
  files costs one dictionary lookup per step.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from importlib.resources.abc import Traversable, TraversableResources
from os import PathLike
from typing import IO, Any

from secure_import._guard import busy
from secure_import.errors import SecureImportError
from secure_import.repository import Repository
from secure_import.verify.tree import Tree, is_listed_dir
from secure_import.verify.tree import listed_tree as _index

__all__ = ["RemoteResourceReader", "RemoteTraversable", "is_listed_dir", "read_verified"]

_materialised: dict[tuple[str, str], str] = {}
_tmp_lock = threading.Lock()
_tmp_root: list[str] = []


def _private_root() -> str:
    if not _tmp_root:
        root = tempfile.mkdtemp(prefix="secure-import-resources-")  # 0700, ours
        atexit.register(shutil.rmtree, root, True)
        _tmp_root.append(root)
    return _tmp_root[0]


def _materialise(item: RemoteTraversable) -> str:
    """A local copy of ``item`` (a file, or a directory's listed files) made
    from verified bytes; made once per process."""
    key = (item.repo.url, item.path)
    with _tmp_lock:
        done = _materialised.get(key)
        if done is not None:
            return done
        base = os.path.join(_private_root(), item.repo.id)
        target = os.path.join(base, *item.path.split("/")) if item.path else base
        if item.is_dir():
            prefix = item.path + "/" if item.path else ""
            with busy():
                listed = [p for p in item.repo.manifest.files if p.startswith(prefix)]
            for path in listed:
                _write_private(os.path.join(base, *path.split("/")), read_verified(item.repo, path))
            os.makedirs(target, mode=0o700, exist_ok=True)
        else:
            _write_private(target, item.read_bytes())
        _materialised[key] = target
        return target


def _write_private(target: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # written earlier by us (a file, then its directory)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def read_verified(repo: Repository, path: str) -> bytes:
    """Verified bytes of the listed file ``path`` (repository-relative).

    Raises:
        FileNotFoundError: the manifest does not list ``path``.
        SecureImportError: the file failed verification or could not be fetched
            (audited as a refusal).
    """
    try:
        with busy():
            entry = repo.manifest.files.get(path)
            if entry is None:
                raise FileNotFoundError(f"not listed in the signed manifest: {repo.url_for(path)}")
            return repo.source(entry, keep=True)
    except SecureImportError as exc:
        if not getattr(exc, "_secure_import_audited", False):
            exc._secure_import_audited = True  # type: ignore[attr-defined]
            repo.record_refusal(exc, module=None)
        raise


def _join(base: str, descendants: tuple[str | PathLike[str], ...]) -> str:
    parts = [part for part in base.split("/") if part]
    for item in descendants:
        text = str(item)
        if text.startswith("/") or "\\" in text:
            raise ValueError(f"absolute or backslashed resource path refused: {text!r}")
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise ValueError(f"'..' in a resource path is refused: {text!r}")
            parts.append(part)
    return "/".join(parts)


class RemoteTraversable(Traversable):
    """A file or directory of a repository's signed tree (``path`` is
    repository-relative, ``""`` for the root)."""

    def __init__(self, repo: Repository, path: str) -> None:
        self.repo = repo
        self.path = path.strip("/")

    def __repr__(self) -> str:
        return f"RemoteTraversable({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteTraversable)
            and other.repo is self.repo
            and other.path == self.path
        )

    def __hash__(self) -> int:
        return hash((id(self.repo), self.path))

    def __fspath__(self) -> str:
        """A private local copy made of verified bytes (see the module docstring)."""
        if not self.exists():
            raise FileNotFoundError(self.url)
        return _materialise(self)

    # Local files() returns a pathlib.Path, and libraries use more of it than
    # the Traversable protocol (sorting, .suffix, .stem): the read-only,
    # name-only parts are offered here too.

    def __lt__(self, other: RemoteTraversable) -> bool:
        if not isinstance(other, RemoteTraversable):
            return NotImplemented
        return (self.repo.url, self.path) < (other.repo.url, other.path)

    def __le__(self, other: RemoteTraversable) -> bool:
        return self == other or self < other

    def __gt__(self, other: RemoteTraversable) -> bool:
        if not isinstance(other, RemoteTraversable):
            return NotImplemented
        return other < self

    def __ge__(self, other: RemoteTraversable) -> bool:
        return self == other or other < self

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def suffixes(self) -> list[str]:
        name = self.name.lstrip(".")
        return ["." + part for part in name.split(".")[1:]] if "." in name else []

    @property
    def stem(self) -> str:
        suffix = self.suffix
        return self.name[: -len(suffix)] if suffix else self.name

    @property
    def url(self) -> str:
        return self.repo.url_for(self.path + ("/" if self.is_dir() and self.path else ""))

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> RemoteTraversable:
        return RemoteTraversable(self.repo, self.path.rpartition("/")[0])

    def exists(self) -> bool:
        return self.is_dir() or self.is_file()

    def _tree(self) -> Tree:
        with busy():
            return _index(self.repo.manifest)

    def is_dir(self) -> bool:
        return self.path in self._tree()

    def is_file(self) -> bool:
        with busy():
            return self.path in self.repo.manifest.files

    def iterdir(self) -> Iterator[RemoteTraversable]:
        children = self._tree().get(self.path)
        if children is None:
            raise NotADirectoryError(self.url)
        prefix = self.path + "/" if self.path else ""
        for name in sorted(children):
            yield RemoteTraversable(self.repo, prefix + name)

    def joinpath(self, *descendants: str | PathLike[str]) -> RemoteTraversable:
        return RemoteTraversable(self.repo, _join(self.path, descendants))

    def __truediv__(self, child: str | PathLike[str]) -> RemoteTraversable:
        return self.joinpath(child)

    def read_bytes(self) -> bytes:
        if self.is_dir():
            raise IsADirectoryError(self.url)
        return read_verified(self.repo, self.path)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        with self.open("r", encoding=encoding, errors=errors) as stream:
            return str(stream.read())

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        """Read-only: ``"r"`` (text, arguments as for ``io.TextIOWrapper``) or ``"rb"``."""
        if mode not in ("r", "rb"):
            raise ValueError(f"remote resources are read-only; mode {mode!r} refused")
        data = io.BytesIO(self.read_bytes())
        if mode == "rb":
            return data
        return io.TextIOWrapper(data, *args, **kwargs)


class RemoteResourceReader(TraversableResources):
    """The reader ``RemoteLoader.get_resource_reader`` returns for a package."""

    def __init__(self, repo: Repository, directory: str) -> None:
        self.repo = repo
        self.directory = directory

    def files(self) -> RemoteTraversable:
        return RemoteTraversable(self.repo, self.directory)
