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
from collections.abc import Iterable, Iterator, Sequence

# importlib.abc.Loader lives in importlib._abc, and decode_source in the
# frozen bootstrap: importing importlib.abc or importlib.util would pull in
# typing and importlib.resources on every start-up.
from importlib._abc import Loader
from importlib._bootstrap_external import decode_source
from importlib.machinery import ModuleSpec
from types import CodeType, ModuleType

from secure_import._guard import busy, is_busy
from secure_import.errors import SecureImportError
from secure_import.hook.deps import DependencyGraph, importing_repository
from secure_import.repository import Repository
from secure_import.verify.manifest import FileEntry
from secure_import.verify.names import is_never_remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.metadata import Distribution, DistributionFinder

    from secure_import.hook.resources import RemoteResourceReader

__all__ = [
    "RemoteDataDirLoader",
    "RemoteLoader",
    "RemotePathEntryFinder",
    "SecureFinder",
    "get_finder",
    "path_hook",
]

#: The schemes of repository URLs (an ``s3://`` repository's modules carry
#: ``s3://bucket/prefix/...`` as ``__file__`` and ``__path__``).
_URL_PREFIX = ("https://", "s3://")


def _owned_error(
    repo: Repository, exc: SecureImportError, fullname: str, url: str | None
) -> SecureImportError:
    """Audit a refusal once and label it for the import system."""
    exc.name = fullname
    if exc.path is None:
        exc.path = url or exc.url or repo.url
    if not getattr(exc, "_secure_import_audited", False):
        exc._secure_import_audited = True  # type: ignore[attr-defined]
        repo.record_refusal(exc, module=fullname)
    return exc


def _dir_of(path: str) -> str:
    """Repository-relative directory (ending in ``/``) of a listed file."""
    return path.rsplit("/", 1)[0] + "/" if "/" in path else ""


class RemoteLoader(Loader):
    """Loads one module of one repository from verified bytes.

    It implements :class:`importlib.abc.InspectLoader`'s methods without
    deriving from it (importlib and the tools that read source, ``linecache``,
    ``inspect``, ``runpy``, ``pkgutil``, call them by name): the ABC's module
    imports ``typing`` and ``importlib.resources`` into every process.
    """

    def __init__(
        self,
        repo: Repository,
        fullname: str,
        entry: FileEntry,
        is_package: bool,
        *,
        tree: str | None = None,
    ):
        self.repo = repo
        self.name = fullname
        self.entry = entry
        self._is_package = is_package
        self.url = repo.url_for(entry.path)
        #: The dependency declaration this module was reached through, named
        #: in its load record (see :mod:`secure_import.hook.deps`).
        self.via: str | None = None
        #: Materialise mode: the verified directory holding the package's
        #: files (``__file__`` is under it); ``None``: ``__file__`` is the URL.
        self.tree = tree
        self.path = self.url if tree is None else _local_path(tree, entry.path)

    def __repr__(self) -> str:
        return f"<RemoteLoader {self.name!r} from {self.url!r}>"

    # -- spec API -----------------------------------------------------------

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        code = self.get_code(self.name)
        exec(code, module.__dict__)  # noqa: S102 - bytes verified against the signed manifest

    # -- InspectLoader / ExecutionLoader -------------------------------------

    def is_package(self, fullname: str) -> bool:
        self._check_name(fullname)
        return self._is_package

    def get_filename(self, fullname: str) -> str:
        self._check_name(fullname)
        return self.path

    def get_source(self, fullname: str) -> str:
        self._check_name(fullname)
        return decode_source(self._verified_bytes(keep=True))

    @staticmethod
    def source_to_code(data: bytes | str, path: str = "<string>") -> CodeType:
        """As :meth:`importlib.abc.InspectLoader.source_to_code`."""
        return compile(data, path, "exec", dont_inherit=True)

    def get_code(self, fullname: str) -> CodeType:
        """Code from verified bytes (or authenticated bytecode of them); audited
        as a load *before* it is handed out (``exec_module`` and runpy both come
        through here), so if the record cannot be written no code runs."""
        self._check_name(fullname)
        repo = self.repo
        with busy():
            try:
                code = repo.code(self.entry)
            except SecureImportError as exc:
                raise _owned_error(repo, exc, self.name, self.url) from None
            try:
                repo.record_load(
                    module=self.name,
                    url=self.url,
                    sha256=self.entry.sha256,
                    trusted=repo.trusted_manifest(),
                    via=self.via,
                )
            except SecureImportError as exc:
                exc._secure_import_audited = True  # type: ignore[attr-defined]
                raise _owned_error(repo, exc, self.name, self.url) from None
        return code

    # -- data ---------------------------------------------------------------

    def get_data(self, path: str) -> bytes:
        """Verified bytes of a file listed in this repository's manifest,
        addressed by its https URL (what ``pkgutil.get_data`` builds from
        ``__file__``).

        Raises:
            FileNotFoundError: ``path`` is not a file the manifest lists
                (nothing is requested), as for a missing local file.
            SecureImportError: the listed file failed verification.
        """
        rel = path[len(self.repo.url) :] if path.startswith(self.repo.url) else None
        tree = self.tree
        if rel is None and tree is not None and path.startswith(tree):
            # A real path under the materialised tree: still answered from
            # verified bytes, never from the file on disk.
            rel = path[len(tree) :].replace(os.sep, "/")
        try:
            with busy():
                entry = None if rel is None else self.repo.manifest.files.get(rel)
                if entry is None:
                    raise FileNotFoundError(f"not listed in the signed manifest: {path}")
                return self.repo.source(entry, keep=True)
        except SecureImportError as exc:
            raise _owned_error(self.repo, exc, self.name, path) from None

    def get_resource_reader(self, fullname: str) -> RemoteResourceReader:
        """The ``importlib.resources`` reader over this package's directory
        (for a plain module: its containing directory)."""
        from secure_import.hook.resources import RemoteResourceReader

        self._check_name(fullname)
        directory = _dir_of(self.entry.path).rstrip("/")
        return RemoteResourceReader(self.repo, directory)

    # -- helpers --------------------------------------------------------------

    def _verified_bytes(self, *, keep: bool) -> bytes:
        try:
            with busy():
                return self.repo.source(self.entry, keep=keep)
        except SecureImportError as exc:
            raise _owned_error(self.repo, exc, self.name, self.url) from None

    def _check_name(self, fullname: str) -> None:
        if fullname != self.name:
            raise ImportError(f"loader for {self.name} cannot handle {fullname}", name=fullname)


def _local_path(tree: str, rel: str) -> str:
    """The real path of repository-relative ``rel`` under a tree (``tree`` ends
    with a separator); ``rel`` of a directory ends with ``/``."""
    return tree + rel.rstrip("/").replace("/", os.sep)


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
        get_finder().add_tree(root, repo)
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


class RemoteDataDirLoader(Loader):
    """Loader of a data-only directory (files listed, no ``__init__.py``):
    an empty package, like a local namespace package, whose only use is
    ``importlib.resources.files("pkg.data")``.  It executes nothing."""

    def __init__(self, repo: Repository, fullname: str, directory: str) -> None:
        self.repo = repo
        self.name = fullname
        self.directory = directory

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: there is no code."""

    def is_package(self, fullname: str) -> bool:
        return True

    def get_source(self, fullname: str) -> None:
        return None

    def get_resource_reader(self, fullname: str) -> RemoteResourceReader:
        from secure_import.hook.resources import RemoteResourceReader

        return RemoteResourceReader(self.repo, self.directory)


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
        finder = _finder
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
        located = get_finder().locate(self.path)
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


def _package_of(rel: str) -> str | None:
    """``"a/b/"`` -> ``"a.b"``; None unless a non-empty run of identifiers."""
    if not rel.endswith("/"):
        return None
    parts = rel[:-1].split("/")
    if not all(part.isascii() and part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


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
        global _claimed
        with self._lock:
            if self._trees.get(tree) is repo:
                return
            self._trees[tree] = repo
            self._located = {}
            if tree not in _claimed:
                _claimed = (*_claimed, tree)

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
            if isinstance(entry, str) and entry.startswith(_claimed):
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


_finder: SecureFinder | None = None
_install_lock = threading.Lock()


def get_finder() -> SecureFinder:
    """The process-wide finder, appended to ``sys.meta_path`` on first use,
    with :func:`path_hook` at the front of ``sys.path_hooks``."""
    global _finder
    with _install_lock:
        if _finder is None:
            _finder = SecureFinder()
        if _finder not in sys.meta_path:
            sys.meta_path.append(_finder)
        if path_hook not in sys.path_hooks:
            sys.path_hooks.insert(0, path_hook)
        return _finder
