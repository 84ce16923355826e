"""The cache commands: ``cache``, ``fetch`` (deploy-time prefetch) and ``lock``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from secure_import.cli.common import _paths, _settings
from secure_import.cli.output import EXIT_OK, Out, Progress, UsageError

if TYPE_CHECKING:
    from secure_import.hook.deps import Edge
    from secure_import.repository import Repository
    from secure_import.verify.manifest import FileEntry


# --- consumer commands ---------------------------------------------------------------


def cmd_cache(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.cache import Cache

    cache = Cache(_paths(args, out).cache_dir)
    if args.cache_command == "clear":
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
    entries = list(cache.entries())
    if out.json:
        out.emit([{"sha256": e.sha256, "size": e.size, "path": str(e.path)} for e in entries])
        return EXIT_OK
    out.note(f"cache: {cache.root}")
    if entries:
        out.table(["sha256", "bytes"], [(e.sha256, f"{e.size:>10}") for e in entries])
    out.note(f"{len(entries)} files, {sum(e.size for e in entries)} bytes")
    return EXIT_OK


# --- fetch (prefetch) -------------------------------------------------------------------


def _wanted(repository: Repository) -> list[FileEntry]:
    manifest = repository.trusted_manifest().manifest
    allowed = repository.modules if repository.modules is not None else set(manifest.provides)
    entries = []
    for path, entry in sorted(manifest.files.items()):
        top = path.split("/", 1)[0]
        if top.removesuffix(".py") in allowed or top.endswith(".dist-info"):
            entries.append(entry)
    return entries


def cmd_fetch(args: argparse.Namespace, out: Out) -> int:
    from secure_import.settings import build_repositories

    settings = _settings(args, out)
    if not settings.repositories:
        raise UsageError("no repositories configured (see secure-import config)")
    summary = []
    for repository, repo in zip(build_repositories(settings), settings.repositories, strict=True):
        try:
            entries = _wanted(repository)
            progress = Progress(out, f"fetching {repo.name}", len(entries))
            size = 0
            for entry in entries:
                repository.source(entry)
                size += entry.length
                progress.advance()
            progress.close()
            summary.append(
                {
                    "name": repo.name,
                    "url": repository.url,
                    "version": repository.manifest.version,
                    "files": len(entries),
                    "bytes": size,
                }
            )
        finally:
            repository.close()
    if out.json:
        out.emit({"ok": True, "repositories": summary})
    else:
        out.table(
            ["repository", "version", "files", "bytes"],
            [(s["name"], s["version"], s["files"], s["bytes"]) for s in summary],
        )
        out.note("every file verified and cached; frozen or offline imports need no network")
    return EXIT_OK


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
