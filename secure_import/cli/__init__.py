"""``secure-import``: the command line, and the one place errors become exit codes.

Exit codes (every command):

- 0: success;
- 1: a verification or operation failure; the message names the check and
  its stable code (``[hash-mismatch]``, ``[config-error]``, ...);
- 2: a usage error (unknown option, missing argument, nothing to run).

``secure-import run`` exits with the program's own status instead.

Output: results on stdout, diagnostics (errors, warnings, progress) on stderr.
``--json`` makes stdout machine-readable (one JSON document; ``audit export``
writes JSON lines); a failure then prints ``{"ok": false, "error": {...}}`` on
stdout as well as the message on stderr.  ``-q`` drops notes and progress,
``-v`` adds details (the error's cause chain; audit events of ``run`` on
stderr).  Colour only on a terminal and never when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from secure_import import __version__
from secure_import.errors import SecureImportError
from secure_import.store.paths import Paths

if TYPE_CHECKING:
    from secure_import.repository import Repository
    from secure_import.settings import Overrides, RepositorySettings, Settings
    from secure_import.store.auditquery import AuditFilter
    from secure_import.verify.manifest import FileEntry

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A usage problem found after argument parsing (exit 2)."""


# --- output ------------------------------------------------------------------


def _colour_wanted(stream: TextIO, flag: bool) -> bool:
    if not flag or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class Out:
    """How this invocation talks: JSON or human, how verbose, in colour or not."""

    json: bool = False
    verbosity: int = 0
    colour: bool = False
    colour_err: bool = False

    def result(self, text: str = "") -> None:
        print(text)

    def note(self, text: str) -> None:
        """A secondary human line (hints, summaries); dropped by ``-q`` and ``--json``."""
        if self.verbosity >= 0 and not self.json:
            print(text)

    def info(self, text: str) -> None:
        """A diagnostic on stderr; dropped by ``-q``."""
        if self.verbosity >= 0:
            print(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        print(self.paint(f"secure-import: warning: {text}", "33", err=True), file=sys.stderr)

    def emit(self, value: object) -> None:
        print(json.dumps(value, indent=2, default=str))

    def paint(self, text: str, code: str, *, err: bool = False) -> str:
        if not (self.colour_err if err else self.colour):
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        status_column: int | None = None,
    ) -> None:
        """A plain aligned table; the status column is coloured on a terminal."""
        cells = [[str(c) for c in row] for row in rows]
        widths = [len(h) for h in headers]
        for row in cells:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        head = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
        print(self.paint(head.rstrip(), "1"))
        for row in cells:
            parts = []
            for i, cell in enumerate(row):
                text = cell.ljust(widths[i]) if i < len(row) - 1 else cell
                if i == status_column:
                    code = (
                        "32"
                        if cell in ("ok", "OK", "pass")
                        else ("33" if cell in ("offline", "skipped", "warn", "discarded") else "31")
                    )
                    text = self.paint(text, code)
                parts.append(text)
            print("  ".join(parts).rstrip())


class Progress:
    """``label [#####.....] n/total`` on a terminal's stderr; silent otherwise."""

    def __init__(self, out: Out, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.enabled = (
            out.verbosity >= 0
            and not out.json
            and bool(getattr(sys.stderr, "isatty", lambda: False)())
        )
        self._shown = 0.0

    def advance(self, step: int = 1) -> None:
        self.done += step
        now = time.monotonic()
        if self.enabled and (now - self._shown > 0.1 or self.done >= self.total):
            self._shown = now
            filled = int(30 * self.done / self.total)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


# --- settings --------------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> Overrides:
    from secure_import.settings import Overrides, RepositorySettings

    repository = None
    if getattr(args, "run_repo", None):
        from secure_import.verify.names import parse_origin

        keys = args.run_key or []
        if not keys:
            raise UsageError("--repo needs at least one --key")
        parse_origin(args.run_repo)  # an http:// URL fails here, before anything else
        repository = RepositorySettings(
            name="command-line",
            url=args.run_repo,
            keys=tuple(Path(k) for k in keys),
            threshold=args.run_threshold or 1,
            modules=frozenset(args.run_module) if args.run_module else None,
            ca_bundle=Path(args.run_ca_bundle) if args.run_ca_bundle else None,
            unsafe_all_modules=not args.run_module,
            source="command line",
        )
    elif getattr(args, "run_key", None) or getattr(args, "run_module", None):
        raise UsageError("--key and --module describe a --repo; give --repo URL too")
    slack = getattr(args, "clock_slack", None)
    return Overrides(
        cache_dir=_opt_path(args.cache_dir),
        state_dir=_opt_path(args.state_dir),
        log_dir=_opt_path(args.log_dir),
        site=True if args.site else None,
        clock_slack=None if slack is None else timedelta(seconds=slack),
        lock_file=_opt_path(getattr(args, "lock_file", None)),
        frozen=True if getattr(args, "frozen", False) else None,
        offline=True if getattr(args, "offline", False) else None,
        repository=repository,
    )


def _opt_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _settings(args: argparse.Namespace, out: Out) -> Settings:
    """Load the layered configuration; unsafe settings are shown on stderr."""
    from secure_import.settings import load_settings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(
            args.config,
            overrides=_overrides(args),
            discover_project=False if args.no_project else None,
        )
    for warning in caught:
        out.warn(str(warning.message))
    return settings


def _paths(args: argparse.Namespace, out: Out | None = None) -> Paths:
    """Directories for cache/audit commands: the flags, else the configuration."""
    return _settings(args, out or Out(verbosity=-1)).paths


# --- publisher commands ------------------------------------------------------------


def _passphrase(args: argparse.Namespace) -> bytes | None:
    from secure_import.store.keyfiles import read_passphrase

    if args.passphrase_file is None and args.passphrase_env is None:
        return None
    return read_passphrase(file=args.passphrase_file, env=args.passphrase_env)


def cmd_keygen(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.keyfiles import generate_keypair, load_public_key_file

    private, public = generate_keypair(
        args.name, Path(args.dir), passphrase=_passphrase(args), force=args.force
    )
    key = load_public_key_file(public)
    if out.json:
        out.emit(
            {
                "ok": True,
                "private_key": str(private),
                "public_key": str(public),
                "key_id": key.key_id,
            }
        )
        return EXIT_OK
    out.result(f"private key: {private} (mode 0600: keep it secret)")
    out.result(f"public key:  {public}")
    out.result(f"key id:      {key.key_id}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.sign import publish
    from secure_import.store.keyfiles import load_private_key_file

    passphrase = _passphrase(args)
    keys = [load_private_key_file(path, passphrase=passphrase) for path in args.key]
    result = publish(
        Path(args.src),
        Path(args.out),
        private_keys=keys,
        version=args.version,
        expires_in=timedelta(days=args.expires_in),
    )
    m = result.manifest
    for skipped in result.skipped:
        out.info(f"skipped: {skipped}")
    if out.json:
        out.emit(
            {
                "ok": True,
                "out_dir": str(result.out_dir),
                "version": m.version,
                "files": len(m.files),
                "provides": list(m.provides),
                "expires": m.expires.isoformat(),
                "skipped": list(result.skipped),
            }
        )
        return EXIT_OK
    out.result(
        f"signed {result.out_dir}: version {m.version}, {len(m.files)} files, "
        f"provides {', '.join(m.provides)}, expires {m.expires.isoformat()}"
    )
    return EXIT_OK


def cmd_root(args: argparse.Namespace, out: Out) -> int:
    """``root init`` / ``root rotate``: the publisher's signed trust-root chain."""
    from secure_import.publish.sign import init_root, rotate_root
    from secure_import.store.keyfiles import load_private_key_file

    passphrase = _passphrase(args)
    repo_dir = Path(args.repo)
    expires_in = timedelta(days=args.expires_in)
    if args.root_command == "init":
        root = init_root(
            repo_dir,
            private_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.key],
            threshold=args.threshold,
            expires_in=expires_in,
        )
    else:
        if not args.old_key or not args.new_key:
            print(
                "secure-import: error: root rotate needs --old-key and --new-key", file=sys.stderr
            )
            return EXIT_USAGE
        root = rotate_root(
            repo_dir,
            old_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.old_key],
            new_keys=[load_private_key_file(p, passphrase=passphrase) for p in args.new_key],
            threshold=args.threshold,
            expires_in=expires_in,
        )
    key_ids = [k.key_id for k in root.keys]
    if out.json:
        out.emit(
            {
                "ok": True,
                "version": root.version,
                "threshold": root.threshold,
                "key_ids": key_ids,
                "expires": root.expires.isoformat(),
            }
        )
        return EXIT_OK
    out.result(
        f"trust root {root.version}: threshold {root.threshold} of {len(key_ids)} keys, "
        f"expires {root.expires.isoformat()}"
    )
    for key_id in key_ids:
        out.result(f"  key {key_id}")
    if args.root_command == "rotate":
        out.result("now sign with the new keys: secure-import sign SRC --key NEW.key --out REPO")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.sitecheck import verify_repository
    from secure_import.store.keyfiles import load_public_key_file

    keys = [load_public_key_file(path) for path in args.key]
    report = verify_repository(
        args.repo, keys=keys, threshold=args.threshold, ca_bundle=args.ca_bundle
    )
    if out.json:
        out.emit(
            {
                "ok": report.ok,
                "source": report.source,
                "version": report.manifest.version if report.manifest else None,
                "key_ids": report.key_ids,
                "files_checked": report.checked,
                "failures": [f.as_dict() for f in report.failures],
            }
        )
    else:
        if report.manifest is not None:
            out.result(
                f"manifest: version {report.manifest.version}, signed by "
                f"{', '.join(k[:16] for k in report.key_ids)}, expires "
                f"{report.manifest.expires.isoformat()}"
            )
        out.result(f"files checked: {report.checked}, failures: {len(report.failures)}")
        for failure in report.failures:
            out.result(f"FAIL {failure}")
        out.result(out.paint("OK", "32") if report.ok else out.paint("FAILED", "31"))
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_serve(args: argparse.Namespace, out: Out) -> int:
    from secure_import.publish.serve import serve_forever_cli

    serve_forever_cli(Path(args.out_dir), args.port, as_json=out.json)
    return EXIT_OK


# --- consumer commands ---------------------------------------------------------------


def cmd_cache(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.cache import Cache

    cache = Cache(_paths(args, out).cache_dir)
    if args.cache_command == "clear":
        count = cache.clear()
        if out.json:
            out.emit({"ok": True, "removed": count, "cache_dir": str(cache.root)})
            return EXIT_OK
        out.result(f"removed {count} cached files from {cache.root}")
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


def _audit_filter(args: argparse.Namespace) -> AuditFilter:
    from secure_import.store.auditquery import AuditFilter, parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return AuditFilter(
        since=since,
        until=until,
        modules=args.module or (),
        repos=args.repo or (),
        outcomes=args.outcome or (),
        events=args.event or (),
    )


def cmd_audit(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.audit import verify_chain
    from secure_import.store.auditquery import read_lines

    path = _paths(args, out).audit_log
    if args.audit_command == "verify":
        report = verify_chain(path)
        if out.json:
            out.emit(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "broken_at_line": report.broken_at,
                    "reason": report.reason,
                }
            )
        elif report.ok:
            out.result(f"audit log intact: {report.records} records ({path})")
        else:
            out.result(
                out.paint(
                    f"audit log BROKEN at line {report.broken_at}: {report.reason} ({path})", "31"
                )
            )
        return EXIT_OK if report.ok else EXIT_FAIL
    selected = _audit_filter(args)
    rows = [(line, record) for line, record in read_lines(path) if selected.matches(record)]
    if args.audit_command == "export":
        return _audit_export(args, out, rows)
    if args.limit is not None:
        rows = rows[-args.limit :] if args.limit > 0 else []
    records = [record for _, record in rows]
    if out.json:
        out.emit(records)
        return EXIT_OK
    out.note(f"audit log: {path}")
    if records:
        out.table(
            ["time", "event", "outcome", "module", "code", "url"],
            [
                (
                    r.get("time", "?"),
                    r.get("event", "?"),
                    r.get("outcome", ""),
                    r.get("module") or "-",
                    r.get("code") or "",
                    r.get("url") or r.get("repo") or "",
                )
                for r in records
            ],
            status_column=2,
        )
    out.note(f"{len(records)} records")
    return EXIT_OK


def _audit_export(
    args: argparse.Namespace, out: Out, rows: list[tuple[bytes, dict[str, object]]]
) -> int:
    data = b"".join(line + b"\n" for line, _ in rows)
    if args.output in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        out.info(f"exported {len(rows)} records")
        return EXIT_OK
    target = Path(args.output)
    try:
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        from secure_import.errors import LocalStateError

        raise LocalStateError(
            f"cannot write the export file: {exc.strerror or exc}", check="export", got=str(target)
        ) from exc
    if out.json:
        out.emit({"ok": True, "exported": len(rows), "output": str(target)})
    else:
        out.result(f"exported {len(rows)} records to {target}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Out) -> int:
    from secure_import.cli.demo import run_demo

    if not out.json:
        return run_demo(out.result)
    steps: list[str] = []
    code = run_demo(steps.append)
    out.emit({"ok": code == 0, "steps": steps})
    return code


def cmd_config(args: argparse.Namespace, out: Out) -> int:
    settings = _settings(args, out)
    data = settings.as_dict()
    if out.json:
        out.emit(data)
        return EXIT_OK
    out.result("files read (lowest precedence first):")
    for name in settings.files or ("(none)",):
        out.result(f"  {name}")
    out.result("")
    out.table(
        ["setting", "value", "from"],
        [
            (
                key,
                data[key if key != "clock_slack" else "clock_slack_seconds"],
                settings.origins.get(key, "default"),
            )
            for key in (
                "cache_dir",
                "state_dir",
                "log_dir",
                "site",
                "clock_slack",
                "lock_file",
                "frozen",
            )
        ],
    )
    out.result("")
    _repo_table(out, settings.repositories)
    return EXIT_OK


def _repo_table(out: Out, repositories: Sequence[RepositorySettings]) -> None:
    if not repositories:
        out.result("no repositories configured")
        return
    out.table(
        ["name", "url", "modules", "keys", "refresh", "from"],
        [
            (
                r.name,
                r.url,
                "*" if r.modules is None else ",".join(sorted(r.modules)),
                f"{r.threshold} of {len(r.keys)}",
                r.refresh,
                r.source,
            )
            for r in repositories
        ],
    )


# --- check ----------------------------------------------------------------------------


@dataclass
class _Finding:
    repository: str
    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
        }


def _check_repository(
    repo: RepositorySettings, settings: Settings, network: bool
) -> list[_Finding]:
    """Each step of a repository's configuration, stopping at the first hard failure."""
    from secure_import.settings import build_repository
    from secure_import.store.keyfiles import load_public_key_file
    from secure_import.transport.https import Fetcher
    from secure_import.verify.root import Root

    found: list[_Finding] = []

    def add(check: str, ok: bool, detail: str) -> bool:
        found.append(_Finding(repo.name, check, ok, detail))
        return ok

    add("url", True, f"{repo.url} (https)")
    keys = []
    for path in repo.keys:
        try:
            key = load_public_key_file(path)
        except SecureImportError as exc:
            add("key", False, exc.detail)
            continue
        keys.append(key)
        add("key", True, f"{path}: ed25519 {key.key_id[:16]}")
    if len(keys) != len(repo.keys):
        return found
    try:
        Root.from_keys(keys, repo.threshold)
    except SecureImportError as exc:
        add("pin", False, exc.detail)
        return found
    add("pin", True, f"threshold {repo.threshold} of {len({k.key_id for k in keys})} keys")
    try:
        transport = repo.transport()
        Fetcher(
            repo.url, limits=settings.limits, ca_bundle=repo.ca_bundle, transport=transport
        ).close()
    except SecureImportError as exc:
        add("transport", False, exc.detail)
        return found
    parts = [
        "truststore"
        if repo.truststore
        else (f"CA {repo.ca_bundle}" if repo.ca_bundle else "certifi CA bundle")
    ]
    if repo.auth is not None:
        parts.append(f"credential {repo.auth.describe()}")
    if repo.client_cert is not None:
        parts.append(f"client certificate {repo.client_cert}")
    add("transport", True, ", ".join(parts))
    if not network and not repo.offline:
        add("manifest", True, "not checked (--no-network)")
        return found
    repository = build_repository(repo, settings)
    try:
        trusted = repository.trusted_manifest()
    except SecureImportError as exc:
        add(
            "manifest",
            False,
            f"[{exc.code}] {exc.detail}" + (f" (check: {exc.check})" if exc.check else ""),
        )
        return found
    finally:
        repository.close()
    manifest = trusted.manifest
    where = "cached copy (offline)" if repo.offline else "fetched"
    add(
        "manifest",
        True,
        f"{where}: version {manifest.version}, expires "
        f"{manifest.expires.isoformat()}, provides {', '.join(manifest.provides)}",
    )
    if repo.modules is not None:
        missing = sorted(set(repo.modules) - set(manifest.provides))
        add(
            "modules",
            not missing,
            "all allowed modules are provided"
            if not missing
            else f"not declared by the manifest: {', '.join(missing)}",
        )
    return found


def cmd_check(args: argparse.Namespace, out: Out) -> int:
    settings = _settings(args, out)
    findings: list[_Finding] = []
    if settings.lock_file is not None:
        exists = settings.lock_file.is_file()
        findings.append(
            _Finding(
                "-",
                "lock-file",
                exists or not settings.frozen,
                f"{settings.lock_file}" + ("" if exists else " does not exist"),
            )
        )
    if not settings.repositories:
        findings.append(_Finding("-", "repositories", False, "no repositories configured"))
    progress = Progress(out, "checking", len(settings.repositories))
    for repo in settings.repositories:
        findings.extend(_check_repository(repo, settings, network=not args.no_network))
        progress.advance()
    progress.close()
    ok = all(f.ok for f in findings)
    if out.json:
        out.emit(
            {
                "ok": ok,
                "files": list(settings.files),
                "frozen": settings.frozen,
                "unsafe": list(settings.unsafe),
                "findings": [f.as_dict() for f in findings],
            }
        )
    else:
        out.note("configuration files: " + (", ".join(settings.files) or "(none)"))
        out.table(
            ["repository", "check", "status", "detail"],
            [(f.repository, f.check, "ok" if f.ok else "FAIL", f.detail) for f in findings],
            status_column=2,
        )
        out.result(
            out.paint("OK", "32")
            if ok
            else out.paint(f"FAILED: {sum(not f.ok for f in findings)} problem(s)", "31")
        )
    return EXIT_OK if ok else EXIT_FAIL


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
    try:
        entries = write_lock(target, repositories)
    finally:
        for repository in repositories:
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
                    }
                    for e in entries.values()
                ],
            }
        )
    else:
        out.table(
            ["url", "version", "manifest sha256"],
            [(e.url, e.manifest_version, e.manifest_sha256) for e in entries.values()],
        )
        out.note(f"wrote {target}; commit it, then run with --frozen (or frozen = true)")
    return EXIT_OK


# --- run ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: Out) -> int:
    from secure_import.cli.launch import resolve_target, run
    from secure_import.settings import install

    try:
        target = resolve_target(args.program, args.m)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = _settings(args, out)
    if not settings.repositories:
        out.warn("no repositories configured: the program runs with local modules only")
    install(settings)
    if out.verbosity > 0:
        from secure_import.store.logbridge import logger

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("secure-import: audit: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return run(target)


# --- parser ---------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command accepts, before or after the command name."""
    kw: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output on stdout",
        **({"default": False} if top else kw),
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose",
        help="more detail (repeatable)",
        **({"default": 0} if top else kw),
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        dest="quiet",
        help="only results and errors",
        **({"default": 0} if top else kw),
    )
    group.add_argument("--config", metavar="FILE", help="explicit configuration file", **kw)
    group.add_argument(
        "--no-project",
        action="store_true",
        help="ignore the project file found from the working directory",
        **({"default": False} if top else kw),
    )
    group.add_argument("--cache-dir", help="override the cache directory", **kw)
    group.add_argument("--state-dir", help="override the trust-state directory", **kw)
    group.add_argument("--log-dir", help="override the audit log directory", **kw)
    group.add_argument(
        "--site",
        action="store_true",
        help="use the site-wide directories (services)",
        **({"default": False} if top else kw),
    )


def _policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline", action="store_true", help="never contact a server: cached, verified data only"
    )
    parser.add_argument(
        "--frozen", action="store_true", help="accept exactly what the lock file pins"
    )
    parser.add_argument("--lock-file", help="the lock file (frozen mode)")
    parser.add_argument(
        "--clock-slack",
        type=float,
        metavar="SECONDS",
        help="tolerated clock difference for expiry (at most 3600)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-import",
        description="Publish signed Python repositories and import from them safely.",
        epilog="exit codes: 0 ok, 1 verification or operation failure, 2 usage error "
        "(run: the program's own status)",
    )
    parser.add_argument("--version", action="version", version=f"secure-import {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace, Out], int], help_: str, **kw: Any
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, **kw)
        _common(p, top=False)
        p.set_defaults(func=func)
        return p

    p = command("keygen", cmd_keygen, "create an Ed25519 publisher key pair")
    p.add_argument("name")
    p.add_argument("--dir", default=".", help="where NAME.key and NAME.pub are written")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.add_argument("--passphrase-file", help="encrypt the private key with this file's content")
    p.add_argument("--passphrase-env", help="encrypt with the value of this environment variable")

    p = command("sign", cmd_sign, "sign a source tree into a static repository")
    p.add_argument("src")
    p.add_argument("--key", action="append", required=True, help="private key (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--version", type=int, help="manifest version (default: previous + 1)")
    p.add_argument("--expires-in", type=int, default=90, metavar="DAYS")
    p.add_argument("--passphrase-file")
    p.add_argument("--passphrase-env")

    p = command("root", cmd_root, "publish a trust root, or rotate/revoke publisher keys")
    p.add_argument("root_command", choices=["init", "rotate"])
    p.add_argument("repo", help="the signed repository directory (sign --out)")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        help="init: private key of the first root (repeatable)",
    )
    p.add_argument(
        "--old-key",
        action="append",
        default=[],
        help="rotate: private keys of the current root (a threshold of them)",
    )
    p.add_argument(
        "--new-key",
        action="append",
        default=[],
        help="rotate: private keys of the new root; leave a key out to revoke it",
    )
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--expires-in", type=int, default=5 * 365, metavar="DAYS")
    p.add_argument("--passphrase-file")
    p.add_argument("--passphrase-env")

    p = command("verify", cmd_verify, "verify a repository directory or https URL")
    p.add_argument("repo")
    p.add_argument("--key", action="append", required=True, help="public key (repeatable)")
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--ca-bundle", help="the only CA trusted for an https REPO")

    p = command("serve", cmd_serve, "serve a repository over HTTPS on 127.0.0.1 (development)")
    p.add_argument("out_dir")
    p.add_argument("--port", type=int, default=8443)

    p = command("cache", cmd_cache, "list or clear the verified-file cache")
    p.add_argument("cache_command", choices=["list", "clear"])

    p = command("audit", cmd_audit, "show, filter, export or verify the audit log")
    p.add_argument("audit_command", choices=["show", "export", "verify"])
    p.add_argument("--since", help="from this time (ISO 8601, or an age: 30m, 2h, 7d)")
    p.add_argument("--until", help="up to this time (ISO 8601, or an age)")
    p.add_argument("--module", action="append", help="a module and its submodules (repeatable)")
    p.add_argument("--repo", action="append", help="repository URL contains this (repeatable)")
    p.add_argument(
        "--outcome", action="append", help="ok, refused, offline, discarded, ... (repeatable)"
    )
    p.add_argument("--event", action="append", help="load, refuse, manifest, ... (repeatable)")
    p.add_argument("--limit", type=int, help="show: only the last N matching records")
    p.add_argument("--output", "-o", help="export: write to this file (mode 0600) not stdout")

    command("demo", cmd_demo, "publish, serve, import and refuse a tampered copy, offline")

    p = command("config", cmd_config, "show the effective configuration and where it came from")
    _policy(p)

    p = command(
        "check",
        cmd_check,
        "validate the configuration: keys, pins, URLs, "
        "transport, and that each repository is reachable and verifies",
    )
    _policy(p)
    p.add_argument(
        "--no-network", action="store_true", help="skip fetching manifests (local checks only)"
    )

    p = command(
        "fetch",
        cmd_fetch,
        "verify and cache every allowed file of every configured "
        "repository (prefetch at deploy time)",
    )
    _policy(p)

    p = command(
        "lock",
        cmd_lock,
        "pin the verified manifest of every configured repository "
        "in the lock file (frozen mode accepts exactly that)",
    )
    _policy(p)
    p.add_argument("--output", "-o", help="lock file to write (default: lock_file)")

    p = command(
        "run",
        cmd_run,
        "run a script or module with the verifying finder installed",
        usage="secure-import run [options] (script.py | -m module | module) [args ...]",
    )
    _policy(p)
    p.add_argument(
        "--repo",
        dest="run_repo",
        metavar="URL",
        help="a repository to trust besides the configuration",
    )
    p.add_argument(
        "--key",
        dest="run_key",
        action="append",
        metavar="FILE",
        help="its pinned public key (repeatable)",
    )
    p.add_argument(
        "--threshold", dest="run_threshold", type=int, help="signatures required (default 1)"
    )
    p.add_argument(
        "--ca-bundle", dest="run_ca_bundle", metavar="FILE", help="the only CA trusted for --repo"
    )
    p.add_argument(
        "--module",
        dest="run_module",
        action="append",
        metavar="NAME",
        help="a top-level name --repo may provide (repeatable; default: what its "
        "manifest declares, which warns as unsafe)",
    )
    p.add_argument(
        "-m",
        nargs=argparse.REMAINDER,
        metavar="MODULE",
        help="run a module as python -m does; the rest is its arguments",
    )
    p.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        help="script.py or a dotted module name, then its arguments",
    )
    return parser


def _make_out(args: argparse.Namespace) -> Out:
    verbosity = int(args.verbose or 0) - int(args.quiet or 0)
    return Out(
        json=bool(args.json),
        verbosity=verbosity,
        colour=_colour_wanted(sys.stdout, not args.json),
        colour_err=_colour_wanted(sys.stderr, True),
    )


def _describe(exc: BaseException, out: Out) -> None:
    print(out.paint(f"secure-import: error: {exc}", "31", err=True), file=sys.stderr)
    if out.verbosity > 0:
        cause = exc.__cause__ or exc.__context__
        while cause is not None:
            print(f"  caused by {type(cause).__name__}: {cause}", file=sys.stderr)
            cause = cause.__cause__ or cause.__context__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (``run``: the program's)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    out = _make_out(args)
    try:
        return int(args.func(args, out))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"secure-import: error: {exc}", file=sys.stderr)
        if out.json:
            out.emit({"ok": False, "error": {"code": "usage", "message": str(exc)}})
        return EXIT_USAGE
    except SecureImportError as exc:
        _describe(exc, out)
        if out.json:
            out.emit({"ok": False, "error": exc.as_dict()})
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
