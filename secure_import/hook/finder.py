"""The import hook: a meta-path finder at the *end* of ``sys.meta_path``, plus
a path-entry hook so remote packages behave like local ones.

Being last means local code always wins.  The finder answers only for names
under top-level names a trusted repository may provide; for every other name it
returns ``None`` without any request.  For a name it owns it never falls
through: every failure is an :class:`~secure_import.errors.SecureImportError`
(an ``ImportError``) with ``name`` and ``path`` set, audited once.

The loader compiles the verified in-memory bytes with the https URL as file
name, so tracebacks, ``linecache``, ``inspect`` and ``doctest`` show remote
source through :meth:`RemoteLoader.get_source`.

Faithfulness to local imports (each point is what importlib does for a file):

- specs carry ``origin`` (the https URL), ``has_location``, ``parent``, and
  ``submodule_search_locations`` for packages only, so ``__file__``,
  ``__path__``, ``__package__`` and ``__cached__`` are set by importlib itself;
- a package's ``__path__`` holds the https URL of its directory.  A hook at the
  *front* of ``sys.path_hooks`` claims exactly the ``https://`` entries (a
  ``str.startswith`` test for any other entry, so local imports pay nothing)
  and returns a :class:`RemotePathEntryFinder`.  That is how
  ``pkgutil.iter_modules``/``walk_packages`` list remote submodules, how a
  library that aliases or extends a remote ``__path__`` keeps working, and how
  :func:`secure_import.extend_package` grafts remote subpackages onto a local
  package.  Being first in the hooks also means a remote ``__path__`` entry is
  never mistaken for a local directory named ``https:``;
- ``importlib.resources`` reads data files listed in the manifest through
  :mod:`secure_import.hook.resources`; ``loader.get_data(url)`` (``pkgutil.get_data``)
  returns verified bytes of a listed file;
- :class:`SecureFinder` is also an ``importlib.metadata`` distribution finder
  (:mod:`secure_import.hook.metadata`) for ``NAME-VERSION.dist-info`` directories.

Every call into a repository runs inside :func:`~secure_import._guard.busy`, so
lazy imports made by our own dependencies never re-enter the finder.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from secure_import._guard import busy, is_busy
from secure_import.errors import SecureImportError
from secure_import.hook import pathentry
from secure_import.hook.deps import DependencyGraph, importing_repository
from secure_import.hook.loader import RemoteDataDirLoader, RemoteLoader, _owned_error
from secure_import.hook.pathentry import (
    _URL_PREFIX,
    RemotePathEntryFinder,
    _find,
    _is_ours,
    _listed,
    _package_of,
    path_hook,
)
from secure_import.repository import Repository
from secure_import.verify.names import is_never_remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.metadata import Distribution, DistributionFinder

__all__ = [
    "RemoteDataDirLoader",
    "RemoteLoader",
    "RemotePathEntryFinder",
    "SecureFinder",
    "get_finder",
    "path_hook",
]


class SecureFinder:
    """Finds modules (and distributions) in the trusted repositories, in the
    order they were added; also routes package directories to extensions
    registered by :func:`secure_import.extend_package`.

    A meta-path finder and, by having ``find_distributions``, an
    ``importlib.metadata`` distribution finder (that protocol is duck-typed).
    It does not subclass ``DistributionFinder``, so ``importlib.metadata`` (and
    the ``email`` package under it) is imported only by programs that use it.
    """

    def __init__(self) -> None:
        self._repos: list[Repository] = []
        self._extensions: list[tuple[Repository, str]] = []
        self._lock = threading.Lock()
        #: Materialised tree (a directory ending with a separator) -> the
        #: repository whose verified files it holds.
        self._trees: dict[str, Repository] = {}
        #: ``locate`` answers; manifests are fixed for the life of the process,
        #: so they change only when a repository or extension is added or removed.
        self._located: dict[str, tuple[Repository, str] | None] = {}
        #: Every top-level name some repository may serve, when all of them were
        #: given ``modules=``; ``None`` when a repository's names come from its
        #: manifest (then each is asked).
        self._allowed: frozenset[str] | None = frozenset()
        #: Signed dependency declarations between the repositories.
        self.graph = DependencyGraph(lambda: tuple(self._repos), self.add, self._modules_changed)

    def _changed(self) -> None:
        """Forget answers derived from the set of repositories (lock held)."""
        self._located = {}
        names: set[str] = set()
        for repo in self._repos:
            if repo.modules is None:
                self._allowed = None
                return
            names |= repo.modules
        self._allowed = frozenset(names)

    def _modules_changed(self) -> None:
        with self._lock:
            self._changed()

    @property
    def repositories(self) -> Sequence[Repository]:
        return tuple(self._repos)

    @property
    def extensions(self) -> Sequence[tuple[Repository, str]]:
        """``(repository, package name)`` pairs grafted onto local packages."""
        return tuple(self._extensions)

    def add(self, repo: Repository) -> None:
        with self._lock:
            self._repos.append(repo)
            self._changed()

    def add_extension(self, repo: Repository, package: str) -> None:
        """Serve ``package.*`` (and nothing else) from ``repo``, reached only
        through the ``__path__`` entry :func:`~secure_import.extend_package` adds."""
        with self._lock:
            if (repo, package) not in self._extensions:
                self._extensions.append((repo, package))
            self._changed()

    def remove(self, repo: Repository) -> None:
        """Stop serving ``repo``, and the repositories that were added only
        because its declarations were followed."""
        followed = self.graph.followed_from(repo)
        with self._lock:
            if repo in self._repos:
                self._repos.remove(repo)
            self._extensions = [(r, p) for r, p in self._extensions if r is not repo]
            self._trees = {t: r for t, r in self._trees.items() if r is not repo}
            self._changed()
        self.graph.forget(repo)
        for other in followed:
            if other in self._repos:
                self.remove(other)
                other.close()

    def add_tree(self, tree: str, repo: Repository) -> None:
        """Serve the package directories under materialised ``tree`` (ends with
        a separator) from ``repo``: claimed by :func:`path_hook`, never read
        from disk by the path finder."""
        with self._lock:
            if self._trees.get(tree) is repo:
                return
            self._trees[tree] = repo
            self._located = {}
            pathentry.claim(tree)

    def locate(self, entry: str) -> tuple[Repository, str] | None:
        """Which repository serves the package directory URL ``entry``, and
        the manifest name of that package; None if no repository does.

        A repository added with :func:`secure_import.add_repo` serves any
        directory under a top-level name it may provide; an extension serves
        only its package's directory and those below it.
        """
        located = self._located
        if entry in located:
            return located[entry]
        found = self._locate(entry)
        located[entry] = found
        return found

    def _locate(self, entry: str) -> tuple[Repository, str] | None:
        if not entry.startswith(_URL_PREFIX):
            for tree, repo in self._trees.items():
                if entry.startswith(tree) and repo in self._repos:
                    rel = entry[len(tree) :].replace(os.sep, "/")
                    package = _package_of(rel + "/")
                    if package is not None:
                        return repo, package
            return None
        # A directory URL belongs to the repository whose URL is its longest
        # prefix (THREATS H4): with ``https://h/`` and ``https://h/b/`` both
        # configured, ``https://h/b/pkg/`` is the second one's ``pkg``, never
        # the first one's ``b.pkg`` -- whatever order they were added in.
        # Repository URLs are normalised, so equal lengths mean one URL.
        longest = max(
            (
                len(repo.url)
                for repo in [*self._repos, *(r for r, _ in self._extensions)]
                if entry.startswith(repo.url)
            ),
            default=-1,
        )
        if longest < 0:
            return None
        for repo in self._repos:
            if len(repo.url) == longest and entry.startswith(repo.url):
                package = _package_of(entry[len(repo.url) :])
                if package is not None:
                    try:
                        with busy():
                            allowed = repo.may_provide(package.partition(".")[0])
                    except SecureImportError as exc:
                        raise _owned_error(repo, exc, package, entry) from None
                    if allowed:
                        return repo, package
        for repo, scope in self._extensions:
            if len(repo.url) == longest and entry.startswith(repo.url):
                package = _package_of(entry[len(repo.url) :])
                if package is not None and (package == scope or package.startswith(scope + ".")):
                    return repo, package
        return None

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if path is None:
            allowed = self._allowed
            if allowed is not None and fullname not in allowed and "." not in fullname:
                return None  # the common miss: one set lookup, no manifest
        top = fullname.partition(".")[0]
        if is_never_remote(top) or is_busy():
            return None
        if path is None:
            return self._find_top(fullname, target)
        # A submodule: served only through a parent __path__ entry that is one
        # of ours (as the path finder would); a library that pointed its
        # __path__ elsewhere (six.moves: []) is left to its own importer.
        tail = fullname.rpartition(".")[2]
        for entry in path:
            if isinstance(entry, str) and _is_ours(entry):
                located = self.locate(entry)
                if located is not None:
                    repo, package = located
                    return self._refuse_last(repo, fullname, f"{package}.{tail}", path, target)
        return None

    def _repo_named_by(self, exc: SecureImportError) -> Repository:
        for repo in self._repos:
            if repo.url == exc.url or repo.manifest_url == exc.url:
                return repo
        return self._repos[0]

    def _find_top(self, fullname: str, target: ModuleType | None) -> ModuleSpec | None:
        """A top-level name: the one repository that may serve it, the
        dependency edge from the importing repository checked, and the
        serving repository's own declarations checked before its code runs."""
        graph = self.graph
        repos = tuple(self._repos)
        if not repos:
            return None
        importer = importing_repository(repos, depth=0)
        culprit = repos[0]
        try:
            with busy():
                try:
                    owner = graph.owner_of(fullname)
                except SecureImportError as exc:
                    culprit = self._repo_named_by(exc)
                    raise
                if owner is None:
                    if importer is not None:
                        culprit = importer
                        absent = graph.declared_but_absent(importer, fullname)
                        if absent is not None:
                            raise absent
                    return None
                via = None
                if importer is not None and importer is not owner:
                    culprit = importer
                    edge = graph.check_import(importer, fullname, owner)
                    via = None if edge is None else edge.describe()
                culprit = owner
                graph.admit(owner)
                reached = graph.reached_by(owner)
                if via is None and reached is not None:
                    via = reached.describe()
        except SecureImportError as exc:
            raise _owned_error(culprit, exc, fullname, None) from None
        spec = self._refuse_last(owner, fullname, fullname, None, target)
        if via is not None and spec is not None and isinstance(spec.loader, RemoteLoader):
            spec.loader.via = via
        return spec

    def _refuse_last(
        self,
        repo: Repository,
        fullname: str,
        listed_as: str,
        path: Sequence[str] | None,
        target: ModuleType | None,
    ) -> ModuleSpec | None:
        """The spec if listed; else None when a finder placed after us (an
        importer a library appended) serves the name; else NotListedError."""
        spec = _listed(repo, fullname, listed_as)
        if spec is not None:
            return spec
        meta_path = list(sys.meta_path)
        after = meta_path[meta_path.index(self) + 1 :] if self in meta_path else []
        for finder in after:
            find = getattr(finder, "find_spec", None)
            if find is not None and find(fullname, path, target) is not None:
                return None
        return _find(repo, fullname, listed_as)  # raises NotListedError, audited

    def find_distributions(
        self, context: DistributionFinder.Context | None = None
    ) -> Iterable[Distribution]:
        """``importlib.metadata`` hook: distributions whose ``.dist-info``
        directory the repositories' signed manifests list."""
        from importlib.metadata import DistributionFinder

        from secure_import.hook.metadata import find_distributions

        if not self._repos or is_busy():
            return iter(())
        return find_distributions(self.repositories, context or DistributionFinder.Context())

    def invalidate_caches(self) -> None:
        """Nothing to invalidate: manifests are fixed for the life of the process."""


_install_lock = threading.Lock()


def get_finder() -> SecureFinder:
    """The process-wide finder, appended to ``sys.meta_path`` on first use,
    with :func:`path_hook` at the front of ``sys.path_hooks``."""
    with _install_lock:
        finder = pathentry.installed
        if finder is None:
            finder = pathentry.installed = SecureFinder()
        if finder not in sys.meta_path:
            sys.meta_path.append(finder)
        if path_hook not in sys.path_hooks:
            sys.path_hooks.insert(0, path_hook)
        return finder
