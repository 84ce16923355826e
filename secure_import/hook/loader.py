"""Loaders of remote modules: what importlib runs for a name a repository serves.

:class:`RemoteLoader` compiles the verified in-memory bytes of one listed module
with the https URL as file name (or, in materialise mode, the real path under
the verified tree), so tracebacks, ``linecache``, ``inspect`` and ``doctest``
show remote source through :meth:`RemoteLoader.get_source`; ``get_data``
returns verified bytes of a listed file.  :class:`RemoteDataDirLoader` is the
loader of a data-only directory: it executes nothing.

Every call into a repository runs inside :func:`~secure_import._guard.busy`, so
lazy imports made by our own dependencies never re-enter the finder.  (Moved
out of :mod:`secure_import.hook.finder`, which re-exports both loaders.)
"""

from __future__ import annotations

import os

# importlib.abc.Loader lives in importlib._abc, and decode_source in the
# frozen bootstrap: importing importlib.abc or importlib.util would pull in
# typing and importlib.resources on every start-up.
from importlib._abc import Loader
from importlib._bootstrap_external import decode_source
from importlib.machinery import ModuleSpec
from types import CodeType, ModuleType

from secure_import._guard import busy
from secure_import.errors import SecureImportError
from secure_import.repository import Repository
from secure_import.verify.manifest import FileEntry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.hook.resources import RemoteResourceReader

__all__ = ["RemoteDataDirLoader", "RemoteLoader"]


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


def _local_path(tree: str, rel: str) -> str:
    """The real path of repository-relative ``rel`` under a tree (``tree`` ends
    with a separator); ``rel`` of a directory ends with ``/``."""
    return tree + rel.rstrip("/").replace("/", os.sep)


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
