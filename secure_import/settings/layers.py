"""The merged settings and the trusted layers: the site, user and explicit
files, the environment and the command line, each overriding what the layers
below it set.

A trusted layer may change anything, because the user chose it; what it may
not be is writable by another user (:func:`_trusted_file`, THREATS H1).  The
project layer, which arrives with the checked-out code, goes through
:mod:`secure_import.settings.project` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secure_import.errors import ConfigError, SecureImportError
from secure_import.settings.model import _FALSE, _TRUE, MAX_SAFE_CLOCK_SLACK, Overrides
from secure_import.settings.parse import _Layer, _seconds
from secure_import.store.fsutil import trust_problem
from secure_import.verify.names import normalize_url


@dataclass
class _Merged:
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    repo_sources: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _apply(merged: _Merged, layer: _Layer) -> None:
    """A trusted layer: every value it sets wins over the lower layers."""
    merged.files.append(str(layer.path))
    if "clock_slack" in layer.values:
        merged.values.pop("unsafe_clock_slack", None)
    for key, value in layer.values.items():
        merged.values[key] = value
        merged.origins["clock_slack" if key == "unsafe_clock_slack" else key] = layer.label
    for name, fields in layer.repos.items():
        merged.repos.setdefault(name, {}).update(fields)
        merged.repo_sources[name] = layer.label


def _normal(url: object) -> object:
    """The URL as repositories key their state (host case, default port, a
    trailing slash): two spellings of one repository are one repository."""
    if not isinstance(url, str):
        return url
    try:
        return normalize_url(url)
    except SecureImportError:
        return url


def _trusted_file(kind: str, path: Path) -> None:
    """Refuse a site, user or explicit file another user could have written
    (THREATS H1): the user chose it, so it is an error, not a silent skip."""
    problem = trust_problem(path)
    if problem is not None:
        raise ConfigError(
            f"{path}: the {kind} configuration file cannot be trusted: {problem}",
            check="config-file-trust",
            got=str(path),
        )


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(
        f"${name}: expected 1/0, true/false, yes/no or on/off", check="config-env", got=repr(value)
    )


def _apply_env(merged: _Merged, env: Mapping[str, str]) -> bool | None:
    """The environment layer; returns the global offline override."""
    for key in ("cache_dir", "state_dir", "log_dir", "lock_file"):
        var = f"SECURE_IMPORT_{key.upper()}"
        if env.get(var):
            merged.values[key] = Path(env[var])
            merged.origins[key] = f"${var}"
    for key in ("site", "frozen", "cache_readonly"):
        var = f"SECURE_IMPORT_{key.upper()}"
        flag = _env_bool(env, var)
        if flag is not None:
            merged.values[key] = flag
            merged.origins[key] = f"${var}"
    raw = env.get("SECURE_IMPORT_CLOCK_SLACK")
    if raw:
        try:
            seconds = float(raw)
        except ValueError as exc:
            raise ConfigError(
                "$SECURE_IMPORT_CLOCK_SLACK: expected seconds", check="config-env", got=repr(raw)
            ) from exc
        slack = _seconds("$SECURE_IMPORT_CLOCK_SLACK", "value", seconds)
        if slack > MAX_SAFE_CLOCK_SLACK:
            raise ConfigError(
                "$SECURE_IMPORT_CLOCK_SLACK: at most 3600 seconds (a larger slack "
                "is only possible as unsafe_clock_slack in a configuration file)",
                check="config-env",
                got=raw,
            )
        merged.values["clock_slack"] = slack
        merged.values.pop("unsafe_clock_slack", None)
        merged.origins["clock_slack"] = "$SECURE_IMPORT_CLOCK_SLACK"
    return _env_bool(env, "SECURE_IMPORT_OFFLINE")


def _apply_overrides(merged: _Merged, overrides: Overrides) -> None:
    for key in ("cache_dir", "state_dir", "log_dir", "site", "clock_slack", "lock_file", "frozen"):
        value = getattr(overrides, key)
        if value is not None:
            merged.values[key] = value
            merged.origins[key] = "command line"
            if key == "clock_slack":
                if value > MAX_SAFE_CLOCK_SLACK:
                    raise ConfigError(
                        "--clock-slack: at most 3600 seconds",
                        check="config",
                        got=value.total_seconds(),
                    )
                merged.values.pop("unsafe_clock_slack", None)
