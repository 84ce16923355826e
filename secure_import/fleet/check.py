"""``secure-import cache verify``: re-check every cached entry against its
signed manifest, without the network and without changing anything.

What is checked, and against what:

- every object file (``objects/ab/abcd...``) is hashed again and must hash to
  its own name (content addressing needs no manifest); anything in
  ``objects`` that is not a regular file named by a sha256 in the right
  folder is reported, and never followed if it is a link;
- for every configured repository (and every repository its signed
  dependency declarations reach, where ``trust_dependencies`` follows them):
  the cached manifest envelope is verified from scratch by the trust code an
  import uses (:class:`~secure_import.verify.trustset.TrustState`: the
  pinned keys moved forward through the stored, re-verified rotations, the
  high-water mark, expiry, the lock in frozen mode), never through the memo;
- against that manifest: the memo of its authentication (sealed, and equal
  to the manifest just verified), the sealed bytecode of every module and
  the pack of every package (HMAC under the state directory's key, bound to
  the file's sha256 and URL), and every materialised tree (exact names,
  owner, modes, every file's sha256 and length);
- files a verified manifest lists but the cache lacks are counted as
  *missing*: a problem only when ``complete`` is asked for (a baked image
  run offline needs them all).

Nothing is written while checking: no audit record, no deletion, no state
change.  With ``repair``, each bad entry found is deleted (an object or seal
file unlinked, a materialised tree removed, a bad manifest copy dropped),
never through a symlink and only inside the cache directory's own entries;
each deletion is audited (``cache-repair``).  A repaired cache holds nothing
bad; what was removed is fetched and verified again on the next online use.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secure_import.config import MANIFEST_NAME
from secure_import.errors import SecureImportError
from secure_import.fleet.cached import verify_cached
from secure_import.repository import Repository
from secure_import.store.fsutil import read_file, remove_tree
from secure_import.store.materialise import check_tree, package_entries
from secure_import.store.paths import Paths
from secure_import.verify.bundle import bundle_entries
from secure_import.verify.manifest import Manifest
from secure_import.verify.root import Root
from secure_import.verify.trust import TrustedManifest

__all__ = ["CacheReport", "Problem", "verify_cache"]

_HEX = frozenset("0123456789abcdef")
_NO_KEY = "no sealing key"


@dataclass
class Problem:
    """One bad cache entry: which, what check, expected versus got."""

    entry: str
    check: str
    expected: str | None
    got: str | None
    message: str
    #: The file or directory ``repair`` deletes (``None``: nothing to delete).
    path: Path | None = None
    repaired: bool = False
    repair_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "check": self.check,
            "expected": self.expected,
            "got": self.got,
            "message": self.message,
            "repaired": self.repaired,
            "repair_error": self.repair_error,
        }


@dataclass
class CacheReport:
    """What :func:`verify_cache` found."""

    cache_dir: Path
    problems: list[Problem] = field(default_factory=list)
    #: Entries checked and found good, by kind.
    good: dict[str, int] = field(default_factory=dict)
    #: Files a verified manifest lists that the cache does not hold, by repository.
    missing: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def count(self, kind: str, n: int = 1) -> None:
        self.good[kind] = self.good.get(kind, 0) + n

    @property
    def missing_total(self) -> int:
        return sum(self.missing.values())

    def ok(self, *, complete: bool) -> bool:
        unrepaired = any(not p.repaired for p in self.problems)
        return not unrepaired and not (complete and self.missing_total)


def verify_cache(
    paths: Paths,
    repositories: Sequence[Repository],
    *,
    repair: bool = False,
    audit: Callable[[Problem], None] | None = None,
    now: datetime | None = None,
) -> CacheReport:
    """Check the cache of ``paths`` (see the module docstring).

    ``repositories``: the configured ones, built offline; those their
    declarations reach are added here.  ``audit`` is called for each repair.
    """
    report = CacheReport(paths.cache_dir)
    root = paths.cache_dir
    if not os.path.lexists(root):
        report.warnings.append(f"{root} does not exist: the cache is empty")
        return report
    objects = _check_objects(root, report)
    checked_ids: set[str] = set()
    verified: dict[str, TrustedManifest] = {}
    for repository in _reachable(repositories, verified, report):
        checked_ids.add(repository.id)
        trusted = _check_repository(repository, objects, report, now or datetime.now(UTC))
        if trusted is not None:
            verified[repository.id] = trusted
    for rid in _metadata_ids(root):
        if rid not in checked_ids:
            report.warnings.append(
                f"metadata/{rid}: a repository not in this configuration; its manifest "
                "was not checked (its objects were re-hashed)"
            )
    if repair:
        for problem in report.problems:
            _repair(problem, root)
            if problem.repaired and audit is not None:
                audit(problem)
    return report


# --- objects --------------------------------------------------------------------


def _check_objects(root: Path, report: CacheReport) -> set[str]:
    """Re-hash every object; return the digests of the good ones."""
    good: set[str] = set()
    base = root / "objects"
    for path, problem in _walk_objects(base):
        rel = _rel(path, root)
        if problem is not None:
            report.problems.append(
                Problem(rel, "cache-entry", "a verified object file", problem, problem, path)
            )
            continue
        data = read_file(path)
        if data is None:
            continue  # vanished meanwhile
        digest = hashlib.sha256(data).hexdigest()
        if digest != path.name:
            report.problems.append(
                Problem(
                    rel,
                    "object-sha256",
                    path.name,
                    digest,
                    "the cached bytes no longer hash to the name they were stored under",
                    path,
                )
            )
            continue
        good.add(digest)
        report.count("objects")
    return good


def _walk_objects(base: Path) -> Iterator[tuple[Path, str | None]]:
    """``(path, problem)`` for everything under ``objects``, links not followed."""
    try:
        folders = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return
    for folder in folders:
        path = Path(folder.path)
        if not folder.is_dir(follow_symlinks=False):
            yield path, "not an object folder (a symlink or a stray file)"
            continue
        try:
            items = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            yield path, f"cannot list: {exc.strerror or exc}"
            continue
        for item in items:
            file = Path(item.path)
            if item.name.startswith(".tmp-"):
                yield file, "an unfinished write (temporary file)"
            elif not item.is_file(follow_symlinks=False):
                yield file, "not a regular file (a symlink is never followed)"
            elif len(item.name) != 64 or not set(item.name) <= _HEX:
                yield file, "not named by a sha256"
            elif item.name[:2] != folder.name:
                yield file, f"in folder {folder.name}, not {item.name[:2]}"
            else:
                yield file, None


# --- repositories -----------------------------------------------------------------


def _reachable(
    configured: Sequence[Repository], verified: dict[str, TrustedManifest], report: CacheReport
) -> Iterator[Repository]:
    """The configured repositories, then those their verified cached
    manifests declare (one level for ``trust_dependencies = true``, all for
    ``"transitive"``), each URL and key set once.  ``verified`` is filled by
    the caller with each yielded repository's verified manifest."""
    queue: list[tuple[Repository, str]] = [(r, r.trust_dependencies) for r in configured]
    seen: set[str] = set()
    while queue:
        repository, follow = queue.pop(0)
        if repository.id in seen:
            continue
        seen.add(repository.id)
        yield repository
        trusted = verified.get(repository.id)
        if follow == "no" or trusted is None:
            continue
        manifest: Manifest = trusted.manifest
        grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        keys = {}
        for req in manifest.requires.values():
            group = (req.repository, tuple(sorted(req.key_ids)))
            grouped.setdefault(group, []).append(req.name)
            keys[group] = req
        for group, names in grouped.items():
            req = keys[group]
            try:
                target = Repository(
                    req.repository,
                    keys=list(req.keys),
                    threshold=req.threshold,
                    modules=names,
                    paths=repository.paths,
                    limits=repository.limits,
                    offline=True,
                    lock=repository.lock_file,
                )
            except SecureImportError as exc:
                report.warnings.append(
                    f"{req.repository} (declared by {repository.url}) cannot be checked: {exc}"
                )
                continue
            queue.append((target, "transitive" if follow == "transitive" else "no"))


def _check_repository(
    repository: Repository, objects: set[str], report: CacheReport, now: datetime
) -> TrustedManifest | None:
    root = repository.paths.cache_dir
    meta = root / "metadata" / repository.id
    envelope_path = meta / MANIFEST_NAME
    envelope = read_file(envelope_path)
    if envelope is None:
        report.missing[repository.url] = report.missing.get(repository.url, 0) + 1
        report.warnings.append(
            f"{repository.url}: no cached manifest ({_rel(envelope_path, root)})"
        )
        return None
    try:
        current = repository.current_root()
        trusted = verify_cached(repository, envelope, now)
    except SecureImportError as exc:
        report.problems.append(
            Problem(
                _rel(envelope_path, root),
                exc.code,
                _text(exc.expected),
                _text(exc.got),
                f"{repository.url}: {exc}",
                envelope_path,
            )
        )
        return None
    report.count("manifests")
    _check_memo(repository, current, trusted, report)
    manifest = trusted.manifest
    allowed = [
        t for t in manifest.provides if repository.modules is None or t in repository.modules
    ]
    wanted = [e for top in allowed for e in package_entries(manifest.files, top)]
    wanted += [
        e
        for d in manifest.dist_info_dirs()
        for p, e in sorted(manifest.files.items())
        if p.startswith(d + "/")
    ]
    absent = sum(1 for e in wanted if e.sha256 not in objects)
    if absent:
        report.missing[repository.url] = report.missing.get(repository.url, 0) + absent
    _check_bytecode(repository, allowed, manifest, report)
    _check_materialised(repository, trusted, allowed, report)
    return trusted


def _check_memo(
    repository: Repository, current: Root, trusted: TrustedManifest, report: CacheReport
) -> None:
    memo = repository.memo
    problem = memo.check(current, trusted.envelope_digest, trusted.manifest, trusted.key_ids)
    if problem is None:
        report.count("memos")
    elif problem != "missing" and not problem.startswith(_NO_KEY):
        path = memo.directory / memo.name_for(current, trusted.envelope_digest)
        report.problems.append(
            Problem(
                _rel(path, repository.paths.cache_dir),
                "memo",
                "the manifest the envelope holds",
                problem,
                f"{repository.url}: manifest memo: {problem}",
                path,
            )
        )


def _check_bytecode(
    repository: Repository, allowed: list[str], manifest: Manifest, report: CacheReport
) -> None:
    store = repository.bytecode
    if store.directory is None:
        return
    root = repository.paths.cache_dir
    no_key = False
    for top in allowed:
        entries = bundle_entries(manifest.files, top)
        modules = [(e.sha256, repository.url_for(e.path)) for e in entries]
        for sha256, url in modules:
            problem = store.check(sha256=sha256, url=url)
            path = store.directory / store.name_for(sha256=sha256, url=url)
            no_key |= _seal_result(problem, path, root, url, "bytecode-seal", report)
        name = store.pack_name(modules)
        if name is not None:
            problem = store.check_pack(modules)
            no_key |= _seal_result(
                problem, store.directory / name, root, f"package {top}", "bytecode-pack", report
            )
    if no_key:
        report.warnings.append(
            f"{repository.url}: sealed bytecode is there but the state directory has no "
            "sealing key: imports ignore it and compile the verified sources"
        )


def _seal_result(
    problem: str | None, path: Path, root: Path, what: str, check: str, report: CacheReport
) -> bool:
    """Record one seal's result; True when only the key was missing."""
    if problem is None:
        report.count("seals")
        return False
    if problem == "missing":
        return False
    if problem.startswith(_NO_KEY):
        return True
    report.problems.append(
        Problem(
            _rel(path, root),
            check,
            "a seal bound to the verified sha256 and URL",
            problem,
            f"{what}: {problem}",
            path,
        )
    )
    return False


def _check_materialised(
    repository: Repository, trusted: TrustedManifest, allowed: list[str], report: CacheReport
) -> None:
    store = repository.materialised
    base = store.root_for(trusted.envelope_digest)
    if not os.path.isdir(base):
        return
    root = repository.paths.cache_dir
    for top in allowed:
        entries = package_entries(trusted.manifest.files, top)
        if not entries:
            continue
        single = entries[0].path == f"{top}.py"
        target = base / (f"{top}.py" if single else top)
        if not os.path.lexists(target):
            continue
        problem = check_tree(base, top, entries)
        if problem is None:
            report.count("materialised trees")
            continue
        report.problems.append(
            Problem(
                _rel(target, root),
                "materialised",
                "exactly the signed files, read-only and ours",
                problem,
                f"{repository.url}: materialised {top}: {problem}",
                target,
            )
        )


# --- helpers ----------------------------------------------------------------------------


def _metadata_ids(root: Path) -> list[str]:
    try:
        return sorted(
            e.name for e in os.scandir(root / "metadata") if e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _repair(problem: Problem, root: Path) -> None:
    """Delete the bad entry: inside the cache only, never through a link."""
    path = problem.path
    if path is None:
        return
    try:
        inside = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        problem.repair_error = "outside the cache directory: left alone"
        return
    # Every directory between the cache and the entry must be a real directory.
    current = root
    for part in inside.parts[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError as exc:
            problem.repair_error = f"cannot inspect {current}: {exc.strerror or exc}"
            return
        if not stat.S_ISDIR(info.st_mode):
            problem.repair_error = f"{current} is a symlink or not a directory: not followed"
            return
    try:
        remove_tree(path)  # unlinks a file or link; a directory without following links
    except OSError as exc:
        problem.repair_error = f"could not delete: {exc.strerror or exc}"
        return
    problem.repaired = True
