"""The path-entry side of the hook: specs for listed names, and remote ``__path__`` entries.

A package's ``__path__`` holds the https URL of its directory (or, in
materialise mode, the verified tree on disk).  :func:`path_hook`, at the
*front* of ``sys.path_hooks``, claims exactly those entries (a
``str.startswith`` test for any other entry, so local imports pay nothing) and
returns a :class:`RemotePathEntryFinder`.  That is how
``pkgutil.iter_modules``/``walk_packages`` list remote submodules, how a
library that aliases or extends a remote ``__path__`` keeps working, and how
:func:`secure_import.extend_package` grafts remote subpackages onto a local
package.  Being first in the hooks also means a remote ``__path__`` entry is
never mistaken for a local directory named ``https:``.

:func:`_listed` and :func:`_find` build the spec of a listed name exactly like
a file-based one.  (Moved out of :mod:`secure_import.hook.finder`, which
re-exports the public names.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType

from secure_import._guard import busy, is_busy
from secure_import.errors import SecureImportError
from secure_import.hook.loader import (
    RemoteDataDirLoader,
    RemoteLoader,
    _dir_of,
    _local_path,
    _owned_error,
)
from secure_import.repository import Repository
from secure_import.verify.manifest import FileEntry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.hook.finder import SecureFinder

__all__ = ["RemotePathEntryFinder", "path_hook"]

#: The schemes of repository URLs (an ``s3://`` repository's modules carry
#: ``s3://bucket/prefix/...`` as ``__file__`` and ``__path__``).
_URL_PREFIX = ("https://", "s3://")


#: The process-wide finder once :func:`secure_import.hook.finder.get_finder`
#: made it (kept here so the path-entry finders need not import that module).
installed: SecureFinder | None = None


def _the_finder() -> SecureFinder:
    from secure_import.hook.finder import get_finder  # that module imports this one

    return get_finder()


def _make_spec(repo: Repository, fullname: str, entry: FileEntry, is_package: bool) -> ModuleSpec:
    """A spec exactly like a file-based one, with https locations, or with
    real paths under the verified tree in materialise mode."""
    tree = None
    top = entry.path.split("/", 1)[0].removesuffix(".py")
    if repo.materialises(top):
        try:
            with busy():
                root = os.fspath(repo.materialised_root(top)) + os.sep
        except SecureImportError as exc:
            raise _owned_error(repo, exc, fullname, repo.url_for(entry.path)) from None
        tree = root
        _the_finder().add_tree(root, repo)
    loader = RemoteLoader(repo, fullname, entry, is_package, tree=tree)
    spec = ModuleSpec(fullname, loader, origin=loader.path, is_package=is_package)
    spec.has_location = True
    if is_package:
        directory = _dir_of(entry.path)
        if tree is None:
            spec.submodule_search_locations = [repo.url_for(directory)]
        else:
            local = _local_path(tree, directory)
            spec.submodule_search_locations = [local]
            # Whatever importer a path finder cached for this directory
            # before (none, normally), ours answers for it from now on: the
            # files there are never imported from disk.
            sys.path_importer_cache[local] = RemotePathEntryFinder(local)
    return spec


def _find(repo: Repository, fullname: str, listed_as: str) -> ModuleSpec:
    """Spec for ``fullname`` defined by the manifest module ``listed_as``.

    The two names differ only when a library aliased a remote ``__path__``
    under another package name: the code is the listed file, the module gets
    the name it was imported by (as a local import would).
    """
    try:
        with busy():
            entry, is_package = repo.find(listed_as)
    except SecureImportError as exc:
        raise _owned_error(repo, exc, fullname, None) from None
    return _make_spec(repo, fullname, entry, is_package)


def _listed(repo: Repository, fullname: str, listed_as: str) -> ModuleSpec | None:
    """Spec for a listed module, package or data-only directory; None if the
    manifest lists nothing under that name (no request is made)."""
    try:
        with busy():
            listing = repo.lookup(listed_as)
    except SecureImportError as exc:
        raise _owned_error(repo, exc, fullname, None) from None
    if listing is None:
        return None
    if listing.entry is None:
        assert listing.data_dir is not None
        loader = RemoteDataDirLoader(repo, fullname, listing.data_dir)
        spec = ModuleSpec(fullname, loader, origin=None, is_package=True)
        spec.submodule_search_locations = [repo.url_for(listing.data_dir + "/")]
        return spec
    return _make_spec(repo, fullname, listing.entry, listing.is_package)


class RemotePathEntryFinder:
    """Path-entry finder for one ``https://`` entry of a package ``__path__``.

    It holds only the URL and asks the process-wide :class:`SecureFinder`,
    at every call, which repository (if any) currently serves that directory,
    so a repository that was removed stops answering at once.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<RemotePathEntryFinder {self.path!r}>"

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> ModuleSpec | None:
        finder = installed
        if finder is None or is_busy():
            return None
        located = finder.locate(self.path)
        if located is None:
            return None
        repo, package = located
        # Unlisted: as a directory without that file, the path finder moves
        # on, and SecureFinder (last on sys.meta_path) refuses the name once
        # every other finder, including importers libraries installed, declined.
        return _listed(repo, fullname, f"{package}.{fullname.rpartition('.')[2]}")

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        """What ``pkgutil.iter_modules`` lists: the package's direct submodules
        in the signed manifest (no request beyond the manifest)."""
        located = _the_finder().locate(self.path)
        if located is None:
            return
        repo, package = located
        try:
            with busy():
                children = repo.manifest.children(package)
        except SecureImportError as exc:
            raise _owned_error(repo, exc, package, self.path) from None
        for name, is_package in children:
            yield prefix + name, is_package

    def invalidate_caches(self) -> None:
        """Nothing cached here."""


#: ``https://`` and, once a package was materialised, the verified trees
#: (each ending with a separator): the path entries our hook claims.
_claimed: tuple[str, ...] = _URL_PREFIX


def _is_ours(entry: str) -> bool:
    return entry.startswith(_claimed)


def path_hook(path: str) -> RemotePathEntryFinder:
    """``sys.path_hooks`` entry: claims ``https://`` (and ``s3://``) entries
    and directories of materialised trees, refuses all others at the cost of
    one ``startswith`` (a materialised directory is never imported from disk)."""
    if isinstance(path, str) and path.startswith(_claimed):
        return RemotePathEntryFinder(path)
    raise ImportError("not a secure_import path entry", path=path)


def claim(tree: str) -> None:
    """Have :func:`path_hook` claim the materialised ``tree`` (ends with a separator)."""
    global _claimed
    if tree not in _claimed:
        _claimed = (*_claimed, tree)


def _package_of(rel: str) -> str | None:
    """``"a/b/"`` -> ``"a.b"``; None unless a non-empty run of identifiers."""
    if not rel.endswith("/"):
        return None
    parts = rel[:-1].split("/")
    if not all(part.isascii() and part.isidentifier() for part in parts):
        return None
    return ".".join(parts)
