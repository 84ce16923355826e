"""The cache commands: ``cache``, ``fetch`` (deploy-time prefetch) and ``lock``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from secure_import.cli.common import _paths, _settings
from secure_import.cli.output import EXIT_FAIL, EXIT_OK, Out, UsageError

if TYPE_CHECKING:
    from secure_import.hook.deps import Edge
    from secure_import.repository import Repository
    from secure_import.settings import Settings


# --- consumer commands ---------------------------------------------------------------


def cmd_cache(args: argparse.Namespace, out: Out) -> int:
    if args.cache_command == "warm":
        return cmd_warm(args, out)
    if args.cache_command == "verify":
        return cmd_verify_cache(args, out)
    if getattr(args, "lock_file", None) is not None:
        raise UsageError("--lock-file applies to cache warm and cache verify")
    if args.cache_command == "clear":
        return _clear_repo(args, out) if args.cache_repo else _clear(args, out)
    if args.objects:
        return _list_objects(args, out)
    return _list(args, out)


def _clear(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.cache import Cache

    cache = Cache(_paths(args, out).cache_dir)
    # Deletes only what it recognises as ours; raises before deleting
    # anything if something to delete cannot be deleted (THREATS H3).
    report = cache.clear_report()
    if out.json:
        out.emit(
            {
                "ok": True,
                "removed": report.objects,
                "cache_dir": str(cache.root),
                "removed_entries": list(report.removed),
                "kept": list(report.skipped),
                "directory_removed": report.root_removed,
            }
        )
        return EXIT_OK
    out.result(f"removed {report.objects} cached files from {cache.root}")
    for item in report.skipped:
        out.warn(f"kept {item}")
    out.note("trust state (high-water marks) is kept in the state directory")
    return EXIT_OK


def _offline_repositories(args: argparse.Namespace, out: Out) -> tuple[Settings, list[Repository]]:
    """The configured repositories, built offline (these commands never fetch)."""
    from dataclasses import replace

    from secure_import.settings import build_repositories

    settings = _settings(args, out)
    settings = replace(
        settings,
        frozen=False,
        repositories=tuple(replace(r, refresh="offline") for r in settings.repositories),
    )
    return settings, build_repositories(settings)


def _clear_repo(args: argparse.Namespace, out: Out) -> int:
    from secure_import.fleet.inventory import clear_repository

    settings, repositories = _offline_repositories(args, out)
    try:
        report = clear_repository(settings.paths, args.cache_repo, repositories)
    finally:
        for repository in repositories:
            repository.close()
    if out.json:
        out.emit(
            {
                "ok": True,
                "repository": report.url,
                "repo_ids": report.repo_ids,
                "removed": report.removed,
                "shared_objects_kept": report.shared_objects,
                "kept": report.kept,
            }
        )
        return EXIT_OK
    removed = ", ".join(f"{n} {kind}" for kind, n in sorted(report.removed.items())) or "nothing"
    out.result(f"cleared {report.url} from {settings.paths.cache_dir}: removed {removed}")
    if report.shared_objects:
        out.note(f"kept {report.shared_objects} objects another cached repository also lists")
    for item in report.kept:
        out.warn(f"kept {item}")
    out.note("trust state (high-water marks) is kept in the state directory")
    return EXIT_OK


def _list(args: argparse.Namespace, out: Out) -> int:
    from secure_import.fleet.inventory import list_cache

    settings, repositories = _offline_repositories(args, out)
    try:
        rows = list_cache(settings.paths, repositories)
    finally:
        for repository in repositories:
            repository.close()
    if args.cache_repo:
        rows = [r for r in rows if args.cache_repo in r.repository]
    if out.json:
        out.emit([r.as_dict() for r in rows])
        return EXIT_OK
    out.note(f"cache: {settings.paths.cache_dir}")
    if rows:
        out.table(
            ["repository", "package", "version", "manifest", "files", "size", "last use"],
            [
                (
                    r.repository,
                    r.package,
                    "-" if r.manifest_version is None else r.manifest_version,
                    r.manifest,
                    r.files,
                    _size(r.size),
                    r.last_use or "-",
                )
                for r in rows
            ],
        )
    out.note(f"{sum(r.files for r in rows)} files, {_size(sum(r.size for r in rows))}")
    return EXIT_OK


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _list_objects(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.cache import Cache

    cache = Cache(_paths(args, out).cache_dir, readonly=True)
    entries = list(cache.entries())
    if out.json:
        out.emit([{"sha256": e.sha256, "size": e.size, "path": str(e.path)} for e in entries])
        return EXIT_OK
    out.note(f"cache: {cache.root}")
    if entries:
        out.table(["sha256", "bytes"], [(e.sha256, f"{e.size:>10}") for e in entries])
    out.note(f"{len(entries)} files, {sum(e.size for e in entries)} bytes")
    return EXIT_OK


# --- warm (bake) and verify -------------------------------------------------------------


def _warm_settings(args: argparse.Namespace, out: Out) -> Settings:
    """The configuration to warm: every repository asked for online (a
    warm run fetches), frozen to the lock file when one is given."""
    from dataclasses import replace

    if getattr(args, "offline", False):
        raise UsageError("cache warm fetches from the repositories: drop --offline")
    settings = _settings(args, out)
    if not settings.repositories:
        raise UsageError("no repositories configured (see secure-import config)")
    if settings.paths.cache_readonly:
        raise UsageError(
            "the cache is declared read-only (SECURE_IMPORT_CACHE_READONLY): "
            "warm it where it is writable, then mark it read-only"
        )
    frozen = settings.frozen or getattr(args, "lock_file", None) is not None
    return replace(
        settings,
        frozen=frozen,
        repositories=tuple(replace(r, refresh="always") for r in settings.repositories),
    )


def cmd_warm(args: argparse.Namespace, out: Out) -> int:
    """``cache warm`` (and ``fetch``): see :mod:`secure_import.fleet.warm`."""
    from secure_import.errors import SecureImportError
    from secure_import.fleet.warm import RepositoryWarmed, warm
    from secure_import.hook.deps import walk
    from secure_import.settings import build_repositories

    settings = _warm_settings(args, out)
    repositories = build_repositories(settings)
    found = list(repositories)
    names = {id(r): c.name for r, c in zip(repositories, settings.repositories, strict=True)}
    reached: dict[str, str | None] = {}
    walk_error: SecureImportError | None = None
    try:
        try:
            found, graph = walk(repositories)
            reached = {r.url: _reached(graph.reached_by(r)) for r in found}
        except SecureImportError as exc:
            walk_error = exc  # each configured repository is still warmed and reported
        reports = warm(
            found,
            names=lambda r: names.get(id(r), r.url),
            reached_by=lambda r: reached.get(r.url),
        )
    finally:
        for repository in found:
            repository.close()
    failed = [r for r in reports if r.error is not None]
    if walk_error is not None and not failed:
        failed_walk = RepositoryWarmed(walk_error.url or "", "dependencies", error=walk_error)
        reports.append(failed_walk)
        failed.append(failed_walk)
    if out.json:
        out.emit(
            {
                "ok": not failed,
                "cache_dir": str(settings.paths.cache_dir),
                "repositories": [_warm_json(r) for r in reports],
            }
        )
        return EXIT_FAIL if failed else EXIT_OK
    rows = []
    for r in reports:
        for p in r.packages:
            rows.append(
                (
                    r.name,
                    p.name,
                    r.version,
                    p.files,
                    p.bytes,
                    p.fetched,
                    "materialised" if p.materialised else "",
                )
            )
    if rows:
        out.table(["repository", "package", "version", "files", "bytes", "fetched", ""], rows)
    if out.verbosity > 0:
        for r in reports:
            for p in r.packages:
                for path in p.fetched_paths:
                    out.info(f"fetched and verified {r.url}{path}")
    for r in failed:
        assert r.error is not None
        out.result(out.paint(f"FAILED {r.name} ({r.url}): {r.error}", "31"))
    total = sum(r.fetched for r in reports)
    out.note(
        f"{sum(r.files for r in reports)} files verified and cached in "
        f"{settings.paths.cache_dir} ({total} fetched now)"
        + ("; frozen to " + str(settings.lock_file) if settings.frozen else "")
    )
    if not failed:
        out.note("imports from this cache need no network: run frozen and offline")
    return EXIT_FAIL if failed else EXIT_OK


def _warm_json(r: object) -> dict[str, object]:
    from secure_import.fleet.warm import RepositoryWarmed

    assert isinstance(r, RepositoryWarmed)
    return {
        "name": r.name,
        "url": r.url,
        "ok": r.error is None,
        "version": r.version,
        "manifest_sha256": r.manifest_sha256,
        "files": r.files,
        "bytes": r.bytes,
        "fetched": r.fetched,
        "reached_by": r.reached_by,
        "packages": [
            {
                "name": p.name,
                "files": p.files,
                "bytes": p.bytes,
                "fetched": p.fetched,
                "materialised": p.materialised,
                "fetched_paths": list(p.fetched_paths),
            }
            for p in r.packages
        ],
        "error": None if r.error is None else r.error.as_dict(),
    }


def cmd_fetch(args: argparse.Namespace, out: Out) -> int:
    """``fetch``: the older name of ``cache warm``."""
    return cmd_warm(args, out)


def cmd_verify_cache(args: argparse.Namespace, out: Out) -> int:
    """``cache verify``: see :mod:`secure_import.fleet.check`."""
    from dataclasses import replace

    from secure_import.fleet.check import Problem, verify_cache
    from secure_import.settings import build_repositories
    from secure_import.store.audit import AuditLog

    settings = _settings(args, out)
    # Never the network: every repository offline (a health check must not fetch).
    settings = replace(
        settings,
        repositories=tuple(replace(r, refresh="offline") for r in settings.repositories),
        frozen=settings.frozen or getattr(args, "lock_file", None) is not None,
    )
    paths = settings.paths
    repositories = build_repositories(settings)

    def audit(problem: Problem) -> None:
        AuditLog(paths.audit_log, witness=paths.witness).append(
            "cache-repair",
            outcome="discarded",
            code=problem.check,
            url=str(paths.cache_dir / problem.entry),
            message=f"deleted by cache verify --repair: {problem.message}",
        )

    try:
        report = verify_cache(paths, repositories, repair=args.repair, audit=audit)
    finally:
        for repository in repositories:
            repository.close()
    ok = report.ok(complete=args.complete)
    if out.json:
        out.emit(
            {
                "ok": ok,
                "cache_dir": str(report.cache_dir),
                "good": report.good,
                "problems": [p.as_dict() for p in report.problems],
                "missing": report.missing,
                "warnings": report.warnings,
            }
        )
        return EXIT_OK if ok else EXIT_FAIL
    for problem in report.problems:
        state = (
            " [removed]"
            if problem.repaired
            else f" [not removed: {problem.repair_error}]"
            if problem.repair_error
            else ""
        )
        out.result(
            out.paint("BAD", "31")
            + f" {problem.entry}: {problem.check}: expected {problem.expected}, "
            f"got {problem.got}{state}"
        )
    for url, count in report.missing.items():
        line = f"{url}: {count} signed files not in the cache"
        if args.complete:
            out.result(out.paint("MISSING", "31") + " " + line)
        else:
            out.info(line + " (fetched on first use; --complete makes this a failure)")
    for warning in report.warnings:
        out.warn(warning)
    good = ", ".join(f"{n} {kind}" for kind, n in sorted(report.good.items())) or "nothing"
    out.note(f"{report.cache_dir}: good: {good}; problems: {len(report.problems)}")
    out.result(out.paint("OK", "32") if ok else out.paint("FAILED", "31"))
    return EXIT_OK if ok else EXIT_FAIL


def cmd_lock(args: argparse.Namespace, out: Out) -> int:
    from dataclasses import replace

    from secure_import.hook.deps import walk
    from secure_import.settings import build_repositories
    from secure_import.store.lock import write_lock

    settings = _settings(args, out)
    target = Path(args.output) if args.output else settings.lock_file
    if target is None:
        raise UsageError("give --output FILE or set lock_file in the configuration")
    if not settings.repositories:
        raise UsageError("no repositories configured (see secure-import config)")
    # Writing a lock is how frozen mode is updated on purpose: build unfrozen.
    repositories = build_repositories(replace(settings, frozen=False))
    found = list(repositories)
    try:
        # One lock for the whole graph: every repository the declarations of
        # the configured ones reach (where trust_dependencies follows them).
        found, graph = walk(repositories)
        reached = {r.url: graph.reached_by(r) for r in found}
        entries = write_lock(target, [repository.lock_entry() for repository in found])
    finally:
        for repository in found:
            repository.close()
    if out.json:
        out.emit(
            {
                "ok": True,
                "lock_file": str(target),
                "repositories": [
                    {
                        "url": e.url,
                        "manifest_sha256": e.manifest_sha256,
                        "manifest_version": e.manifest_version,
                        "reached_by": _reached(reached.get(e.url)),
                    }
                    for e in entries.values()
                ],
            }
        )
    else:
        out.table(
            ["url", "version", "manifest sha256", "reached"],
            [
                (
                    e.url,
                    e.manifest_version,
                    e.manifest_sha256,
                    _reached(reached.get(e.url)) or "configured",
                )
                for e in entries.values()
            ],
        )
        out.note(f"wrote {target}; commit it, then run with --frozen (or frozen = true)")
    return EXIT_OK


def _reached(edge: Edge | None) -> str | None:
    """How a followed repository entered the graph (None if configured)."""
    if edge is None:
        return None
    return f"{edge.requirement.name} declared by {edge.declarer.url}"
