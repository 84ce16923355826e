"""Options every command group shares: settings, paths and passphrases from the
command line, resolved once."""

from __future__ import annotations

import argparse
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from secure_import.cli.output import Out, UsageError
from secure_import.store.paths import Paths

if TYPE_CHECKING:
    from secure_import.settings import Overrides, Settings


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
