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
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from secure_import import __version__
from secure_import.cli.audit import cmd_audit
from secure_import.cli.cache import cmd_cache, cmd_fetch, cmd_lock
from secure_import.cli.common import _settings
from secure_import.cli.doctor import cmd_check, cmd_config
from secure_import.cli.objectstore import cmd_publish
from secure_import.cli.output import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    Out,
    UsageError,
    _colour_wanted,
    printable,
)
from secure_import.cli.publisher import cmd_keygen, cmd_root, cmd_serve, cmd_sign, cmd_verify
from secure_import.cli.tree import cmd_tree
from secure_import.errors import SecureImportError

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "Out", "build_parser", "main"]


def cmd_demo(args: argparse.Namespace, out: Out) -> int:
    from secure_import.cli.demo import run_demo

    if not out.json:
        return run_demo(out.result)
    steps: list[str] = []
    code = run_demo(steps.append)
    out.emit({"ok": code == 0, "steps": steps})
    return code


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


class _ParseError(Exception):
    """argparse found a usage error; carries its message and the (sub)parser."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors reach :func:`main` as an
    exception (subcommand parsers are of the same class), so ``--json`` can
    answer them in JSON instead of argparse's text."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(message, self)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    p.add_argument("--key", action="append", default=[], help="private key (repeatable)")
    p.add_argument(
        "--sigstore",
        action="store_true",
        help="also sign keylessly with Sigstore (ambient OIDC credentials of the CI job, or "
        "SIGSTORE_ID_TOKEN); writes secure-import-manifest.sigstore.json (needs the extra "
        "secure-import[sigstore])",
    )
    p.add_argument(
        "--sigstore-trust-config",
        metavar="FILE",
        help="sigstore client trust configuration of a private Sigstore deployment "
        "(default: the public-good instance)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--version", type=int, help="manifest version (default: previous + 1)")
    p.add_argument("--expires-in", type=int, default=90, metavar="DAYS")
    p.add_argument("--passphrase-file")
    p.add_argument("--passphrase-env")
    p.add_argument(
        "--requires",
        metavar="FILE",
        help="dependency declarations (TOML: [requires.NAME] repository, keys, range; "
        "[imports] local) signed into the manifest",
    )
    p.add_argument(
        "--local-import",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the code imports from the consumer's own environment (repeatable)",
    )
    p.add_argument(
        "--bundles",
        choices=("split", "whole", "legacy"),
        default="split",
        help="signed, compressed module bundles: split (default) = one per small package, "
        "one per package directory above --split-above; whole = one per top-level package; "
        "legacy = unsigned uncompressed bundles and a manifest older consumers read",
    )
    p.add_argument(
        "--split-above",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="a package whose modules total more than this is bundled per directory "
        "(default 1048576)",
    )

    p = command(
        "publish",
        cmd_publish,
        "upload a signed site to S3-compatible object storage (manifest last, "
        "never over a newer release)",
    )
    p.add_argument("site", help="the signed site directory (sign --out)")
    p.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        help="public key the site and the store's manifest must verify with (repeatable)",
    )
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="https S3 API endpoint of a non-AWS store (default: AWS, or $AWS_ENDPOINT_URL)",
    )
    p.add_argument("--region", help="the bucket's region (default: the AWS chain's)")
    p.add_argument("--ca-bundle", help="a CA certificate to trust besides the system's")
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="remove the lock an interrupted publish left (only when no other publish is running)",
    )

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
    p.add_argument("--key", action="append", default=[], help="public key (repeatable)")
    p.add_argument("--threshold", type=int, default=1)
    identity = p.add_argument_group(
        "Sigstore identity (a publisher pinned by who signed; counts once toward --threshold)"
    )
    identity.add_argument(
        "--identity-issuer", metavar="URL", help="OIDC issuer URL, or github-actions / gitlab"
    )
    identity.add_argument("--identity", metavar="SAN", help="exact certificate identity")
    identity.add_argument("--identity-repository", metavar="OWNER/REPO|URI")
    identity.add_argument("--identity-workflow", metavar="PATH|URI", help="signing workflow")
    identity.add_argument("--identity-ref", metavar="REF", help="e.g. refs/tags/v*")
    identity.add_argument("--identity-environment", metavar="NAME")
    identity.add_argument(
        "--sigstore-trusted-root",
        metavar="FILE",
        help="trusted_root.json to verify against (default: public-good, shipped with sigstore)",
    )
    p.add_argument("--ca-bundle", help="the only CA trusted for an https REPO")

    p = command("serve", cmd_serve, "serve a repository over HTTPS on 127.0.0.1 (development)")
    p.add_argument("out_dir")
    p.add_argument("--port", type=int, default=8443)
    ca = p.add_mutually_exclusive_group()
    ca.add_argument(
        "--ca-dir",
        metavar="DIR",
        help="keep the development CA here (0700; key 0600), so a saved ca_bundle works "
        "across restarts (default: serve-ca under the user's data directory)",
    )
    ca.add_argument(
        "--temporary-ca",
        action="store_true",
        help="a throwaway CA in a temporary directory, removed on exit",
    )

    p = command(
        "cache",
        cmd_cache,
        "the verified-file cache: list, clear, warm (fetch and verify everything the "
        "configuration or lock file names, to bake an image), verify (re-check every entry "
        "against its signed manifest; a health check)",
    )
    p.add_argument("cache_command", choices=["list", "clear", "warm", "verify"])
    _policy(p)
    p.add_argument(
        "--repair", action="store_true", help="verify: delete every bad entry found (audited)"
    )
    p.add_argument(
        "--repo",
        dest="cache_repo",
        metavar="URL",
        help="clear: only this repository's entries (objects other repositories list are "
        "kept); list: only repositories whose URL contains this",
    )
    p.add_argument(
        "--objects", action="store_true", help="list: every cached object by sha256 instead"
    )
    p.add_argument(
        "--complete",
        action="store_true",
        help="verify: also fail when a signed file of a configured repository is not cached "
        "(a baked image run offline needs them all)",
    )

    p = command("audit", cmd_audit, "show, filter, export or verify the audit log")
    p.add_argument("audit_command", choices=["show", "export", "verify"])
    p.add_argument("--since", help="from this time (ISO 8601, or an age: 30m, 2h, 7d)")
    p.add_argument("--until", help="up to this time (ISO 8601, or an age)")
    p.add_argument("--module", action="append", help="a module and its submodules (repeatable)")
    p.add_argument("--repo", action="append", help="repository URL contains this (repeatable)")
    p.add_argument(
        "--host",
        action="append",
        help="served by this host, HOST or HOST:PORT: the origin or a mirror, or 'cache' "
        "(repeatable)",
    )
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
        "pin the verified manifest of every configured repository, and of every "
        "repository their dependency declarations reach, in the lock file "
        "(frozen mode accepts exactly that)",
    )
    _policy(p)
    p.add_argument("--output", "-o", help="lock file to write (default: lock_file)")

    p = command(
        "tree",
        cmd_tree,
        "show the dependency graph: each declaration, the repository serving it, "
        "the version in use, and any range or publisher that no longer matches",
    )
    _policy(p)

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
    print(
        out.paint(f"secure-import: error: {printable(str(exc))}", "31", err=True), file=sys.stderr
    )
    if out.verbosity > 0:
        cause = exc.__cause__ or exc.__context__
        while cause is not None:
            print(f"  caused by {type(cause).__name__}: {printable(str(cause))}", file=sys.stderr)
            cause = cause.__cause__ or cause.__context__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (``run``: the program's)."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(raw)
    except _ParseError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {printable(str(exc))}", file=sys.stderr)
        # Only the options before a program's own arguments count (run -- ... --json).
        if "--json" in raw[: raw.index("--")] if "--" in raw else "--json" in raw:
            Out(json=True).emit(
                {"ok": False, "error": {"code": "usage", "message": printable(str(exc))}}
            )
        return EXIT_USAGE
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    out = _make_out(args)
    try:
        return int(args.func(args, out))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"secure-import: error: {printable(str(exc))}", file=sys.stderr)
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
