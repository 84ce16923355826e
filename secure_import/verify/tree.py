"""The directory tree a signed manifest lists (pure: derived from the manifest only).

Directories are never listed themselves: a directory exists exactly when a
listed file lies under it.  The finder asks whether a name is a data-only
directory, and ``importlib.resources`` walks the tree; both use this index,
built once per manifest, so walking hundreds of small data files costs one
dictionary lookup per step.
"""

from __future__ import annotations

import threading
import weakref

from secure_import.verify.manifest import FileEntry, Manifest

__all__ = ["Listing", "Tree", "is_listed_dir", "listed_tree"]

#: Directory (repository-relative, ``""`` for the top) -> {child name: is directory}.
Tree = dict[str, dict[str, bool]]

_trees: weakref.WeakKeyDictionary[Manifest, Tree] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def listed_tree(manifest: Manifest) -> Tree:
    """Directory -> {child name: is directory}, for every listed path."""
    with _lock:
        found = _trees.get(manifest)
        if found is not None:
            return found
        tree: Tree = {"": {}}
        for path in manifest.files:
            parts = path.split("/")
            for depth, part in enumerate(parts):
                parent = "/".join(parts[:depth])
                is_dir = depth < len(parts) - 1
                tree.setdefault(parent, {})[part] = is_dir
                if is_dir:
                    tree.setdefault("/".join(parts[: depth + 1]), {})
        _trees[manifest] = tree
        return tree


def is_listed_dir(manifest: Manifest, directory: str) -> bool:
    """Whether the manifest lists files under ``directory`` (repository-relative)."""
    return bool(directory) and directory in listed_tree(manifest)


class Listing(tuple[FileEntry | None, bool, str | None]):
    """What a name is in a repository's signed manifest (:meth:`Repository.lookup`).

    A tuple subclass written out rather than a ``typing.NamedTuple``, which
    would import ``typing`` into every process (see :class:`FileEntry`).
    """

    __slots__ = ()

    def __new__(cls, entry: FileEntry | None, is_package: bool, data_dir: str | None) -> Listing:
        return tuple.__new__(cls, (entry, is_package, data_dir))

    def __getnewargs__(self) -> tuple[FileEntry | None, bool, str | None]:
        return (self[0], self[1], self[2])

    @property
    def entry(self) -> FileEntry | None:
        """The module's file; ``None`` for a data-only directory."""
        return self[0]

    @property
    def is_package(self) -> bool:
        return self[1]

    @property
    def data_dir(self) -> str | None:
        """The repository-relative directory of a data-only directory, else ``None``."""
        return self[2]

    def __repr__(self) -> str:
        return f"Listing(entry={self[0]!r}, is_package={self[1]!r}, data_dir={self[2]!r})"
