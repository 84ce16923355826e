"""The file listing of a manifest: one entry per signed file (pure, no I/O).

:class:`FileEntry` is what the signature covers for one file (path, SHA-256,
length).  :class:`FileTable` is the same listing rebuilt from a memo
(:mod:`secure_import.store.memo`) without building every entry up front.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["FileEntry", "FileTable"]


class FileEntry(tuple[str, str, int]):
    """One file listed in a manifest: where it lives, its SHA-256 and length.

    A tuple rather than a dataclass: a manifest holds one per file and is
    rebuilt in every process, where tuple construction is several times
    cheaper.  It is immutable all the same.  Written out rather than a
    ``typing.NamedTuple``, which would import ``typing`` into every process.
    """

    __slots__ = ()

    def __new__(cls, path: str, sha256: str, length: int) -> FileEntry:
        return tuple.__new__(cls, (path, sha256, length))

    def __getnewargs__(self) -> tuple[str, str, int]:
        return (self[0], self[1], self[2])

    @property
    def path(self) -> str:
        return self[0]

    @property
    def sha256(self) -> str:
        return self[1]

    @property
    def length(self) -> int:
        return self[2]

    def __repr__(self) -> str:
        return f"FileEntry(path={self[0]!r}, sha256={self[1]!r}, length={self[2]!r})"


class FileTable(Mapping[str, FileEntry]):
    """Read-only ``path -> FileEntry`` over two plain dicts, building an entry
    the first time it is asked for.

    A warm process loads a repository's whole file list from a memo but looks
    up only the files of the packages it imports: building every entry up
    front cost ~0.4 us a file, and the two ``str``/``int`` dicts are not even
    tracked by the garbage collector.  Entries are equal to, and as immutable
    as, those of a parsed manifest.
    """

    __slots__ = ("_built", "_digests", "_lengths")

    def __init__(self, digests: dict[str, str], lengths: dict[str, int]) -> None:
        if digests.keys() != lengths.keys():
            raise ValueError("file columns do not line up")
        self._digests = digests
        self._lengths = lengths
        self._built: dict[str, FileEntry] = {}

    def __getitem__(self, path: str) -> FileEntry:
        entry = self._built.get(path)
        if entry is None:
            # KeyError for an unlisted path, as from a dict.
            entry = self._built[path] = FileEntry(path, self._digests[path], self._lengths[path])
        return entry

    def get(self, path: str, default: FileEntry | None = None) -> FileEntry | None:  # type: ignore[override]
        entry = self._built.get(path)
        if entry is not None:
            return entry
        if path not in self._digests:
            return default
        return self[path]

    def __contains__(self, path: object) -> bool:
        return path in self._digests

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<FileTable of {len(self)} files>"
