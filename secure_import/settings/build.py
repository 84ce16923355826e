"""Turning resolved settings into repositories and installing them in the finder."""

from __future__ import annotations

import os

from secure_import.errors import ConfigError, SecureImportError
from secure_import.repository import Repository
from secure_import.settings.merge import load_settings
from secure_import.settings.model import Overrides, RepositorySettings, Settings
from secure_import.store.refusals import audit_refusal

# --- building repositories ------------------------------------------------------


_configured: list[Repository] = []


def build_repository(repo: RepositorySettings, settings: Settings) -> Repository:
    """A :class:`~secure_import.Repository` for one configured repository.

    Raises:
        ConfigError, KeyFileError, InsecureURLError: as the constructor does;
            also frozen mode without a lock file (never pretend to be frozen).
    """
    if settings.frozen and settings.lock_file is None:
        raise ConfigError("frozen mode needs a lock file", check="frozen")
    transport = repo.transport()
    return Repository(
        repo.url,
        keys=list(repo.keys),
        publishers=list(repo.identities),
        sigstore_trusted_root=repo.sigstore_trusted_root,
        threshold=repo.threshold,
        root_version=repo.root_version,
        modules=repo.modules,
        ca_bundle=repo.ca_bundle,
        paths=settings.paths,
        limits=settings.limits,
        offline=repo.offline,
        lock=settings.lock_file if settings.frozen else None,
        transport=None if transport.is_default else transport,
        s3_endpoint=repo.s3_endpoint,
        s3_region=repo.s3_region,
        trust_dependencies=repo.trust_dependencies,
        unsafe_undeclared_imports=repo.unsafe_undeclared_imports,
        materialise=repo.materialise,
        mirrors=repo.mirrors,
        fallback=repo.fallback,
    )


def build_repositories(settings: Settings) -> list[Repository]:
    """One repository per configured entry, in precedence order (not installed).

    Raises:
        SecureImportError: the first repository that cannot be built; those
            built before it are closed.
    """
    built: list[Repository] = []
    try:
        for repo in settings.repositories:
            built.append(build_repository(repo, settings))
    except BaseException:
        for repository in built:
            repository.close()
        raise
    return built


def configure(
    path: str | os.PathLike[str] | None = None, *, overrides: Overrides | None = None
) -> list[Repository]:
    """Install the finder with the repositories from configuration; return them.

    Reads the layers as :func:`load_settings` does (``path`` is the explicit
    file).  Calling it again replaces the repositories a previous call
    installed; repositories added with ``add_repo`` are left alone.

    Every refusal is audited, as :func:`secure_import.add_repo`'s are: in the
    log of the configured directories once they are known, else of the
    default ones.

    Raises:
        ConfigError: the configuration is invalid (nothing is installed).
        KeyFileError, InsecureURLError: a pinned key or URL is unusable.
    """
    try:
        settings = load_settings(path, overrides=overrides)
    except SecureImportError as exc:
        audit_refusal(None, exc)
        raise
    try:
        return install(settings)
    except SecureImportError as exc:
        audit_refusal(settings.paths, exc)
        raise


def install(settings: Settings) -> list[Repository]:
    """Build the repositories of ``settings`` and install them in the finder
    (replacing those a previous :func:`configure`/:func:`install` installed).

    Raises:
        SecureImportError: a repository cannot be built; nothing changed.
    """
    from secure_import.hook.finder import get_finder

    repositories = build_repositories(settings)
    finder = get_finder()
    for old in _configured:
        finder.remove(old)
        old.close()
    _configured.clear()
    for repository in repositories:
        finder.add(repository)
    _configured.extend(repositories)
    from secure_import.hook import inherit

    inherit.export()
    return list(repositories)
