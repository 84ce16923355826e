"""``secure-import cache warm``: fetch and verify everything a configuration
or lock file names, so an image can be baked and run frozen and offline.

Nothing here verifies anything itself.  Each repository is driven through the
code path of an import (:meth:`Repository.trusted_manifest`, then the
:class:`~secure_import.assembly.Assembler` that imports use): the manifest is
fetched and verified under the pinned keys (in frozen mode it must be the
locked one), recorded as the high-water mark, cached with its memo; every file
of every top-level name the repository may provide (and their distribution
metadata) is fetched as a bundle or file by file, verified against its signed
sha256 and length, cached, and compiled into sealed bytecode; a second pass
seals each package's bytecode pack, and materialised packages are written.
So a warm cache holds exactly what the next import would have put there, and
an import from it needs no network.

Repositories reached through signed dependency declarations are warmed too,
where ``trust_dependencies`` lets the configuration follow them (the graph
``secure-import lock`` pins).  A failure stops that repository only; the
report lists every failure and the command exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from secure_import.errors import LocalStateError, SecureImportError
from secure_import.repository import Repository
from secure_import.store.materialise import package_entries

__all__ = ["PackageWarmed", "RepositoryWarmed", "warm"]


@dataclass(frozen=True)
class PackageWarmed:
    """One top-level name of a repository, as the cache now holds it."""

    name: str
    files: int
    bytes: int
    #: Files that were not in the cache before (fetched now).
    fetched: int
    materialised: bool = False
    #: The repository paths of the files fetched now.
    fetched_paths: tuple[str, ...] = ()


@dataclass
class RepositoryWarmed:
    """One repository: what was fetched, or why it failed."""

    url: str
    name: str
    version: int | None = None
    manifest_sha256: str | None = None
    packages: list[PackageWarmed] = field(default_factory=list)
    #: Distribution metadata files (``*.dist-info``).
    metadata_files: int = 0
    error: SecureImportError | None = None
    #: How the repository entered the graph: ``None`` when configured.
    reached_by: str | None = None

    @property
    def files(self) -> int:
        return sum(p.files for p in self.packages) + self.metadata_files

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.packages)

    @property
    def fetched(self) -> int:
        return sum(p.fetched for p in self.packages)


def warm(
    repositories: Sequence[Repository],
    *,
    names: Callable[[Repository], str],
    reached_by: Callable[[Repository], str | None] = lambda r: None,
) -> list[RepositoryWarmed]:
    """Warm every repository of ``repositories`` (already walked: see the
    module docstring); never raises a :class:`SecureImportError`, each
    failure is in its repository's report."""
    reports = []
    for repository in repositories:
        report = RepositoryWarmed(
            repository.url, names(repository), reached_by=reached_by(repository)
        )
        try:
            _warm_one(repository, report)
            if repository.cache.unwritable is not None:
                raise LocalStateError(
                    f"the cache could not be written ({repository.cache.unwritable}): "
                    "the files were verified but not kept",
                    check="cache-warm",
                    got=str(repository.paths.cache_dir),
                )
        except SecureImportError as exc:
            report.error = exc
        reports.append(report)
    return reports


def _warm_one(repository: Repository, report: RepositoryWarmed) -> None:
    trusted = repository.trusted_manifest()
    manifest = trusted.manifest
    report.version = manifest.version
    report.manifest_sha256 = trusted.envelope_digest
    allowed = [
        top for top in manifest.provides if repository.modules is None or top in repository.modules
    ]
    before = {
        top: [
            e.path
            for e in package_entries(manifest.files, top)
            if not repository.cache.has(e.sha256)
        ]
        for top in allowed
    }
    # The import path's own prefetch: each package verified whole (bundle or
    # files), every file of it and of its distribution metadata cached.
    count = repository.assembly.prefetch(None if repository.modules is None else frozenset(allowed))
    for top in allowed:
        # Every module now has sealed bytecode: this pass seals the package's
        # pack, as the second process to import it would.
        repository.assembly.verify_package(top)
        entries = package_entries(manifest.files, top)
        materialised = False
        if repository.materialises(top):
            repository.materialised_root(top)
            materialised = True
        report.packages.append(
            PackageWarmed(
                top,
                len(entries),
                sum(e.length for e in entries),
                len(before[top]),
                materialised,
                tuple(before[top]),
            )
        )
    report.metadata_files = max(count - sum(p.files for p in report.packages), 0)
