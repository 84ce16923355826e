"""The import hook: a meta-path finder at the *end* of ``sys.meta_path``.

Being last means local code always wins.  The finder answers only for names
under top-level names a trusted repository may provide; for every other name it
returns ``None`` without any request.  For a name it owns it never falls
through: every failure is an :class:`~secure_import.errors.SecureImportError`
(an ``ImportError``) with ``name`` and ``path`` set, audited once.

The loader compiles the verified in-memory bytes with the https URL as file
name, so tracebacks, ``linecache`` and ``inspect`` show remote source through
:meth:`RemoteLoader.get_source`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from importlib.abc import InspectLoader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import decode_source
from types import CodeType, ModuleType

from ._guard import busy, is_busy
from .bytecode import compile_verified
from .config import is_never_remote
from .errors import SecureImportError
from .manifest import FileEntry
from .repository import Repository

__all__ = ["RemoteLoader", "SecureFinder", "get_finder"]


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


class RemoteLoader(InspectLoader):
    """Loads one module of one repository from verified bytes."""

    def __init__(self, repo: Repository, fullname: str, entry: FileEntry, is_package: bool):
        self.repo = repo
        self.name = fullname
        self.entry = entry
        self._is_package = is_package
        self.url = repo.url_for(entry.path)

    def __repr__(self) -> str:
        return f"<RemoteLoader {self.name!r} from {self.url!r}>"

    # -- spec API -----------------------------------------------------------

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        code = self.get_code(self.name)
        exec(code, module.__dict__)  # noqa: S102 - bytes verified against the signed manifest

    # -- InspectLoader ------------------------------------------------------

    def is_package(self, fullname: str) -> bool:
        self._check_name(fullname)
        return self._is_package

    def get_filename(self, fullname: str) -> str:
        self._check_name(fullname)
        return self.url

    def get_source(self, fullname: str) -> str:
        self._check_name(fullname)
        return decode_source(self._verified_bytes(keep=True))

    def get_code(self, fullname: str) -> CodeType:
        """Code compiled from verified bytes; audited as a load *before* it is
        handed out (``exec_module`` and runpy both come through here), so if
        the record cannot be written no code object ever exists."""
        self._check_name(fullname)
        data = self._verified_bytes(keep=False)
        try:
            with busy():
                trusted = self.repo.trusted_manifest()
                self.repo.record(
                    "load",
                    outcome="ok",
                    module=self.name,
                    url=self.url,
                    sha256=self.entry.sha256,
                    manifest_version=trusted.manifest.version,
                    key_id=",".join(sorted(trusted.key_ids)),
                )
        except SecureImportError as exc:
            exc._secure_import_audited = True  # type: ignore[attr-defined]
            raise _owned_error(self.repo, exc, self.name, self.url) from None
        return compile_verified(data, sha256=self.entry.sha256, url=self.url)

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


class SecureFinder(MetaPathFinder):
    """Finds modules in the trusted repositories, in the order they were added."""

    def __init__(self) -> None:
        self._repos: list[Repository] = []
        self._lock = threading.Lock()

    @property
    def repositories(self) -> Sequence[Repository]:
        return tuple(self._repos)

    def add(self, repo: Repository) -> None:
        with self._lock:
            self._repos.append(repo)

    def remove(self, repo: Repository) -> None:
        with self._lock:
            if repo in self._repos:
                self._repos.remove(repo)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if not self._repos or is_never_remote(top) or is_busy():
            return None
        for repo in self._repos:
            try:
                with busy():
                    if not repo.may_provide(top):
                        continue
                    entry, is_package = repo.find(fullname)
            except SecureImportError as exc:
                raise _owned_error(repo, exc, fullname, None) from None
            loader = RemoteLoader(repo, fullname, entry, is_package)
            spec = ModuleSpec(fullname, loader, origin=loader.url, is_package=is_package)
            spec.has_location = True
            if is_package:
                spec.submodule_search_locations = [
                    repo.url_for(entry.path.rsplit("/", 1)[0] + "/")
                ]
            return spec
        return None

    def invalidate_caches(self) -> None:
        """Nothing to invalidate: manifests are fixed for the life of the process."""


_finder: SecureFinder | None = None
_install_lock = threading.Lock()


def get_finder() -> SecureFinder:
    """The process-wide finder, appended to ``sys.meta_path`` on first use."""
    global _finder
    with _install_lock:
        if _finder is None:
            _finder = SecureFinder()
        if _finder not in sys.meta_path:
            sys.meta_path.append(_finder)
        return _finder
