"""``secure-import cache list`` and ``cache clear --repo``: the cache by
repository and package, and clearing one repository only.

The cache is content-addressed, so its objects do not say whose they are.
Each repository's cached manifest does: a configured repository's copy is
verified with its pinned keys (:func:`~secure_import.fleet.cached.verify_cached`);
any other copy is only read, and its URL taken from the audit log's
``manifest`` record of the same envelope digest.  The audit log's ``load``
records give each package's last use.

``clear_repository`` deletes one repository's entries and nothing else, with
the rules of ``cache clear`` (THREATS H3): only inside the cache's own
entries, each a real directory owned by the user, never through a link; an
object goes only if no other cached manifest lists it (if another manifest
cannot be read, no object goes at all).  Trust state is kept.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secure_import.errors import LocalStateError, SecureImportError
from secure_import.fleet.cached import AuditIndex, envelope_path, read_unverified, verify_cached
from secure_import.repository import Repository
from secure_import.store.bytecode import BYTECODE_DIR, module_file_name, pack_prefix
from secure_import.store.cache import Cache
from secure_import.store.fsutil import read_file, remove_tree
from secure_import.store.materialise import package_entries
from secure_import.store.memo import MEMO_DIR
from secure_import.store.paths import Paths
from secure_import.verify.bundle import bundle_entries
from secure_import.verify.manifest import Manifest
from secure_import.verify.names import normalize_url

__all__ = ["CachedPackage", "RepoCleared", "clear_repository", "list_cache"]

UNKNOWN = "(unknown repository)"


@dataclass(frozen=True)
class CachedPackage:
    """One row of ``cache list``."""

    repository: str
    repo_id: str
    package: str
    manifest_version: int | None
    #: ``verified`` (configured, checked with its pinned keys), ``unverified``
    #: (not configured here, or its copy failed: read for display only).
    manifest: str
    files: int
    size: int
    last_use: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "repo_id": self.repo_id,
            "package": self.package,
            "manifest_version": self.manifest_version,
            "manifest": self.manifest,
            "files": self.files,
            "size": self.size,
            "last_use": self.last_use,
        }


@dataclass
class _Cached:
    """One repository id in the cache: its URL and manifest, if known."""

    repo_id: str
    url: str | None
    manifest: Manifest | None
    verified: bool
    modules: frozenset[str] | None = None


def _survey(paths: Paths, repositories: Sequence[Repository], index: AuditIndex) -> list[_Cached]:
    known = {r.id: r for r in repositories}
    now = datetime.now(UTC)
    found = []
    for rid in Cache(paths.cache_dir, readonly=True).repo_ids():
        envelope = read_file(envelope_path(paths, rid))
        repository = known.get(rid)
        manifest: Manifest | None = None
        verified = False
        if envelope is not None and repository is not None:
            try:
                manifest = verify_cached(repository, envelope, now).manifest
                verified = True
            except SecureImportError:
                manifest = None
        if envelope is not None and manifest is None:
            manifest = read_unverified(envelope)
        url = repository.url if repository is not None else None
        if url is None and envelope is not None:
            url = index.url_of(envelope)
        modules = None if repository is None else repository.modules
        found.append(_Cached(rid, url, manifest, verified, modules))
    return found


def list_cache(paths: Paths, repositories: Sequence[Repository]) -> list[CachedPackage]:
    """One row per cached repository and top-level name, then one for the
    objects no cached manifest lists."""
    index = AuditIndex.read(paths)
    cache = Cache(paths.cache_dir, readonly=True)
    sizes = {e.sha256: e.size for e in cache.entries()}
    listed: set[str] = set()
    rows = []
    for item in _survey(paths, repositories, index):
        url = item.url or UNKNOWN
        if item.manifest is None:
            rows.append(CachedPackage(url, item.repo_id, "-", None, "unreadable", 0, 0, None))
            continue
        listed.update(e.sha256 for e in item.manifest.files.values())
        for top in item.manifest.provides:
            if item.modules is not None and top not in item.modules:
                continue
            held = [e for e in package_entries(item.manifest.files, top) if e.sha256 in sizes]
            rows.append(
                CachedPackage(
                    url,
                    item.repo_id,
                    top,
                    item.manifest.version,
                    "verified" if item.verified else "unverified",
                    len(held),
                    sum(sizes[e.sha256] for e in held),
                    index.last_load.get((url, top)),
                )
            )
    stray = [s for s in sizes if s not in listed]
    if stray:
        rows.append(
            CachedPackage(
                "-",
                "-",
                "(no cached manifest lists them)",
                None,
                "-",
                len(stray),
                sum(sizes[s] for s in stray),
                None,
            )
        )
    return rows


@dataclass
class RepoCleared:
    """What :func:`clear_repository` deleted and kept."""

    url: str
    repo_ids: list[str]
    removed: dict[str, int] = field(default_factory=dict)
    #: Objects kept because another cached manifest lists them.
    shared_objects: int = 0
    kept: list[str] = field(default_factory=list)

    def add(self, kind: str) -> None:
        self.removed[kind] = self.removed.get(kind, 0) + 1


def clear_repository(paths: Paths, url: str, repositories: Sequence[Repository]) -> RepoCleared:
    """Delete the cached entries of the repository at ``url`` (every key set
    it was pinned with), and only those.

    Raises:
        LocalStateError: the cache holds no repository with that URL, or the
            cache directory itself is a link or not ours (nothing deleted).
    """
    target = url if url.startswith("s3://") else normalize_url(url)
    root = paths.cache_dir
    _own_dir(root, root)
    index = AuditIndex.read(paths)
    survey = _survey(paths, repositories, index)
    mine = [c for c in survey if c.url == target]
    if not mine:
        cached = sorted({c.url or UNKNOWN for c in survey})
        raise LocalStateError(
            f"the cache holds no repository at {target}",
            check="cache-clear",
            expected="one of: " + (", ".join(cached) or "(the cache is empty)"),
            got=target,
        )
    report = RepoCleared(target, [c.repo_id for c in mine])
    others = [c for c in survey if c.url != target]
    mine_ids = {c.repo_id for c in mine}
    ours_objects = {e.sha256 for c in mine if c.manifest for e in c.manifest.files.values()}
    if any(c.manifest is None for c in others):
        report.kept.append(
            "every object: another cached repository's manifest cannot be read, so "
            "which objects it needs is unknown"
        )
        ours_objects = set()
    else:
        needed = {e.sha256 for c in others if c.manifest for e in c.manifest.files.values()}
        report.shared_objects = len(ours_objects & needed)
        ours_objects -= needed
    for sha256 in sorted(ours_objects):
        _unlink(root, Path("objects") / sha256[:2] / sha256, "objects", report)
    for item in mine:
        if item.manifest is not None:
            _remove_bytecode(root, target, item.manifest, report)
        _remove(root, Path("materialised") / item.repo_id, "materialised trees", report)
        _remove(root, Path("metadata") / item.repo_id, "manifests", report)
    for name in _listdir(root, Path(MEMO_DIR), report):
        if any(name.startswith(f"manifest-{rid}-") for rid in mine_ids):
            _unlink(root, Path(MEMO_DIR) / name, "memos", report)
    return report


def _remove_bytecode(root: Path, url: str, manifest: Manifest, report: RepoCleared) -> None:
    names = {
        module_file_name(e.sha256, url + e.path)
        for e in manifest.files.values()
        if e.path.endswith(".py")
    }
    prefixes = []
    for top in manifest.provides:
        entries = bundle_entries(manifest.files, top)
        if entries:
            prefixes.append(pack_prefix(url + entries[0].path))
    for folder in _listdir(root, Path(BYTECODE_DIR), report):
        rel = Path(BYTECODE_DIR) / folder
        for name in _listdir(root, rel, report):
            if name in names:
                _unlink(root, rel / name, "bytecode seals", report)
            elif name.startswith(tuple(prefixes)):
                _unlink(root, rel / name, "bytecode packs", report)


# --- careful deletion ---------------------------------------------------------------


def _own_dir(path: Path, root: Path) -> None:
    """Raise unless ``path`` is a real directory owned by the user."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise LocalStateError(
            f"cannot clear in {root}: {exc.strerror or exc}", check="cache-clear", got=str(path)
        ) from exc
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise LocalStateError(
            f"cannot clear in {root}: {path} is a symlink, not a directory or not yours; "
            "nothing was deleted",
            check="cache-clear",
            got=str(path),
        )


def _parents_ok(root: Path, rel: Path, report: RepoCleared) -> bool:
    """Every directory from the cache down to ``rel``'s parent is a real
    directory of ours (a link is never followed out of the cache)."""
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return False
        except OSError:
            report.kept.append(f"{current} (cannot inspect)")
            return False
        if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            report.kept.append(f"{current} (a symlink, not a directory or not yours: not followed)")
            return False
    return True


def _listdir(root: Path, rel: Path, report: RepoCleared) -> list[str]:
    if not _parents_ok(root, rel / "x", report):
        return []
    try:
        return sorted(os.listdir(root / rel))
    except OSError:
        return []


def _unlink(root: Path, rel: Path, kind: str, report: RepoCleared) -> None:
    if not _parents_ok(root, rel, report):
        return
    try:
        os.unlink(root / rel)  # a file or a link itself, never its target
    except FileNotFoundError:
        return
    except OSError as exc:
        report.kept.append(f"{root / rel} ({exc.strerror or exc})")
        return
    report.add(kind)


def _remove(root: Path, rel: Path, kind: str, report: RepoCleared) -> None:
    if not _parents_ok(root, rel, report):
        return
    path = root / rel
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        report.kept.append(f"{path} (a symlink, not a directory or not yours: not followed)")
        return
    try:
        remove_tree(path)
    except OSError as exc:
        report.kept.append(f"{path} ({exc.strerror or exc})")
        return
    report.add(kind)
