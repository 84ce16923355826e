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

from secure_import.verify.manifest import Manifest

__all__ = ["Tree", "is_listed_dir", "listed_tree"]

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
