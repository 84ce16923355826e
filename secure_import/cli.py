"""``secure-import``: the command line, and the one place errors become exit codes.

Exit codes: 0 success; 1 a verification or operation failure (the message
names the check and its stable code); 2 a usage error.  Diagnostics go to
stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from . import __version__
from .config import Paths
from .errors import SecureImportError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _paths(args: argparse.Namespace) -> Paths:
    return Paths.default(
        cache_dir=getattr(args, "cache_dir", None),
        state_dir=getattr(args, "state_dir", None),
        log_dir=getattr(args, "log_dir", None),
    )


def _passphrase(args: argparse.Namespace) -> bytes | None:
    from .keys import read_passphrase

    if args.passphrase_file is None and args.passphrase_env is None:
        return None
    return read_passphrase(file=args.passphrase_file, env=args.passphrase_env)


def cmd_keygen(args: argparse.Namespace) -> int:
    from .keys import generate_keypair, load_public_key_file

    private, public = generate_keypair(
        args.name, Path(args.dir), passphrase=_passphrase(args), force=args.force
    )
    key = load_public_key_file(public)
    print(f"private key: {private} (mode 0600: keep it secret)")
    print(f"public key:  {public}")
    print(f"key id:      {key.key_id}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from .keys import load_private_key_file
    from .publish import publish

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
    print(f"signed {result.out_dir}: version {m.version}, {len(m.files)} files, "
          f"provides {', '.join(m.provides)}, expires {m.expires.isoformat()}")
    for skipped in result.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .check import verify_repository
    from .keys import load_public_key_file

    keys = [load_public_key_file(path) for path in args.key]
    report = verify_repository(
        args.repo, keys=keys, threshold=args.threshold, ca_bundle=args.ca_bundle
    )
    if args.json:
        print(json.dumps({
            "ok": report.ok,
            "source": report.source,
            "version": report.manifest.version if report.manifest else None,
            "key_ids": report.key_ids,
            "files_checked": report.checked,
            "failures": [f.as_dict() for f in report.failures],
        }, indent=2))
    else:
        if report.manifest is not None:
            print(f"manifest: version {report.manifest.version}, signed by "
                  f"{', '.join(k[:16] for k in report.key_ids)}, expires "
                  f"{report.manifest.expires.isoformat()}")
        print(f"files checked: {report.checked}, failures: {len(report.failures)}")
        for failure in report.failures:
            print(f"FAIL {failure}")
        print("OK" if report.ok else "FAILED")
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve_forever_cli

    serve_forever_cli(Path(args.out_dir), args.port)
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import Cache

    cache = Cache(_paths(args).cache_dir)
    if args.cache_command == "clear":
        count = cache.clear()
        print(f"removed {count} cached files from {cache.root}")
        print("trust state (high-water marks) is kept in the state directory")
        return EXIT_OK
    entries = list(cache.entries())
    if args.json:
        print(json.dumps([{"sha256": e.sha256, "size": e.size, "path": str(e.path)}
                          for e in entries], indent=2))
    else:
        print(f"cache: {cache.root}")
        for e in entries:
            print(f"{e.sha256}  {e.size:>10}")
        print(f"{len(entries)} files, {sum(e.size for e in entries)} bytes")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AuditLog, verify_chain

    path = _paths(args).audit_log
    if args.audit_command == "verify":
        report = verify_chain(path)
        if args.json:
            print(json.dumps({"ok": report.ok, "records": report.records,
                              "broken_at_line": report.broken_at, "reason": report.reason}))
        elif report.ok:
            print(f"audit log intact: {report.records} records ({path})")
        else:
            print(f"audit log BROKEN at line {report.broken_at}: {report.reason} ({path})")
        return EXIT_OK if report.ok else EXIT_FAIL
    records = list(AuditLog(path).records())
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    print(f"audit log: {path}")
    for r in records:
        print(f"{r.get('time', '?')}  {r.get('event', '?'):<13} {r.get('outcome', ''):<8} "
              f"{r.get('module') or '-':<24} {r.get('code') or ''}  {r.get('url') or ''}")
    print(f"{len(records)} records")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def _add_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="override the cache directory")
    parser.add_argument("--state-dir", help="override the trust-state directory")
    parser.add_argument("--log-dir", help="override the audit log directory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-import",
        description="Publish signed Python repositories and import from them safely.",
    )
    parser.add_argument("--version", action="version", version=f"secure-import {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an Ed25519 publisher key pair")
    p.add_argument("name")
    p.add_argument("--dir", default=".", help="where NAME.key and NAME.pub are written")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.add_argument("--passphrase-file", help="encrypt the private key with this file's content")
    p.add_argument("--passphrase-env", help="encrypt with the value of this environment variable")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a source tree into a static repository")
    p.add_argument("src")
    p.add_argument("--key", action="append", required=True, help="private key (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--version", type=int, help="manifest version (default: previous + 1)")
    p.add_argument("--expires-in", type=int, default=90, metavar="DAYS")
    p.add_argument("--passphrase-file")
    p.add_argument("--passphrase-env")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a repository directory or https URL")
    p.add_argument("repo")
    p.add_argument("--key", action="append", required=True, help="public key (repeatable)")
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--ca-bundle", help="the only CA trusted for an https REPO")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("serve", help="serve a repository over HTTPS on 127.0.0.1 (development)")
    p.add_argument("out_dir")
    p.add_argument("--port", type=int, default=8443)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("cache", help="list or clear the verified-file cache")
    p.add_argument("cache_command", choices=["list", "clear"])
    p.add_argument("--json", action="store_true")
    _add_dirs(p)
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("audit", help="show or verify the audit log")
    p.add_argument("audit_command", choices=["show", "verify"])
    p.add_argument("--json", action="store_true")
    _add_dirs(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="publish, serve, import and refuse a tampered copy, offline")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except SecureImportError as exc:
        print(f"secure-import: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
