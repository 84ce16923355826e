"""``secure-import tree``: the dependency graph of the configured repositories.

For every repository (configured, or reached by following declarations) it
shows the manifest in use, and for every signed declaration: what is declared,
which repository serves the name, the version in use and whether the edge
holds.  A range that no longer matches, a publisher that disagrees, a name
served elsewhere or a dependency nobody pins is a failure (exit status 1).
It only looks: nothing is written to the audit log.
"""

from __future__ import annotations

import argparse

from secure_import.cli.common import _settings
from secure_import.cli.output import EXIT_FAIL, EXIT_OK, Out, UsageError
from secure_import.errors import SecureImportError


def cmd_tree(args: argparse.Namespace, out: Out) -> int:
    from secure_import.hook.deps import DependencyGraph
    from secure_import.settings import build_repositories

    settings = _settings(args, out)
    if not settings.repositories:
        raise UsageError("no repositories configured (see secure-import config)")
    found = build_repositories(settings)
    graph = DependencyGraph(lambda: found, found.append, audit=False)
    repos: list[dict[str, object]] = []
    edges: list[dict[str, object]] = []
    try:
        index = 0
        while index < len(found):
            repo = found[index]
            index += 1
            reached = graph.reached_by(repo)
            entry: dict[str, object] = {
                "url": repo.url,
                "reached_by": None
                if reached is None
                else f"{reached.requirement.name} declared by {reached.declarer.url}",
            }
            repos.append(entry)
            try:
                trusted = repo.trusted_manifest()
                entry["manifest_version"] = trusted.manifest.version
                entry["manifest_sha256"] = trusted.envelope_digest
                results = graph.inspect(repo)
            except SecureImportError as exc:
                entry["error"] = str(exc)
                continue
            for req, edge, error in results:
                edges.append(
                    {
                        "from": repo.url,
                        "name": req.name,
                        "declared": f"{req.constraint} from {req.repository} "
                        f"(publisher {req.publisher})",
                        "served_by": None if edge is None else edge.target.url,
                        "in_use": None if edge is None else edge.in_use,
                        "followed": edge is not None and edge.followed,
                        "ok": error is None,
                        "error": None if error is None else str(error),
                        "code": None if error is None else error.code,
                    }
                )
    finally:
        for repository in found:
            repository.close()
    ok = all("error" not in r for r in repos) and all(e["ok"] for e in edges)
    if out.json:
        out.emit({"ok": ok, "repositories": repos, "edges": edges})
        return EXIT_OK if ok else EXIT_FAIL
    out.table(
        ["repository", "manifest", "reached"],
        [
            (
                str(r["url"]),
                str(r.get("manifest_version", "FAIL")),
                str(r["reached_by"] or "configured"),
            )
            for r in repos
        ],
    )
    for r in repos:
        if "error" in r:
            out.warn(f"{r['url']}: {r['error']}")
    if edges:
        out.table(
            ["from", "name", "declared", "in use", "status"],
            [
                (
                    str(e["from"]),
                    str(e["name"]),
                    str(e["declared"]),
                    str(e["in_use"] or "-") + (" (followed)" if e["followed"] else ""),
                    "ok" if e["ok"] else f"FAIL {e['code']}",
                )
                for e in edges
            ],
            status_column=4,
        )
        for e in edges:
            if not e["ok"]:
                out.warn(f"{e['from']} -> {e['name']}: {e['error']}")
    else:
        out.note("no dependency declarations")
    out.result(out.paint("OK", "32") if ok else out.paint("FAILED", "31"))
    return EXIT_OK if ok else EXIT_FAIL
