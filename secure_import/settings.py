"""Configuration files: repositories and policy from TOML, merged by a documented precedence.

Where settings come from, highest precedence first:

1. the command line (``secure-import --cache-dir ...``, ``run --repo URL --key F``);
2. ``SECURE_IMPORT_*`` environment variables (see :data:`ENVIRONMENT`);
3. an explicit configuration file (``configure(path)``, ``--config``,
   ``$SECURE_IMPORT_CONFIG``);
4. the project file, found by walking up from the working directory: the
   first directory holding ``secure-import.toml`` or ``pyproject.toml`` (with a
   ``[tool.secure-import]`` table) ends the walk;
5. the user file, ``<platformdirs user_config_dir>/config.toml``;
6. the site file, ``<platformdirs site_config_dir>/config.toml``;
7. the defaults in :mod:`secure_import.config`.

Scalars (paths, clock slack, frozen, lock file) take the value of the highest
layer that sets them.  Repositories are tables named by the user
(``[repositories.acme]``); a higher *trusted* layer (explicit, user, site) may
change any field of a repository of the same name.

Invariants:

- the project file may only **tighten** trust, because it arrives with
  whatever code is checked out: it may add repositories with pins and
  restrict existing ones (fewer modules, higher threshold, offline), never set
  an ``unsafe_*`` option, name credentials, move the state or log directory,
  raise the clock slack, leave frozen mode, replace a lock file, or claim a
  module name another repository already serves;
- every file is parsed strictly: an unknown key, a wrong type or an
  ``http://`` URL is a :class:`~secure_import.errors.ConfigError` naming the
  file and the key;
- anything that weakens security is spelled ``unsafe_*``, warns
  (:class:`UnsafeConfigWarning`) every time the settings are loaded, and is
  refused in frozen mode;
- paths in a file are relative to that file's directory (so ``keys/acme.pub``
  next to ``pyproject.toml`` works from any working directory);
- no secret is ever read from a file's text: credentials name an environment
  variable or a file, read only when a repository is built.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs

from secure_import.config import APP_NAME, DEFAULT_CLOCK_SLACK, Limits
from secure_import.errors import ConfigError, SecureImportError
from secure_import.repository import Repository
from secure_import.store.keyfiles import load_public_key_file
from secure_import.store.paths import Paths, site_mode_from_env
from secure_import.transport.https import AuthHeader, TransportOptions
from secure_import.verify.names import is_never_remote, parse_origin

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENT",
    "MAX_SAFE_CLOCK_SLACK",
    "AuthSettings",
    "Overrides",
    "RepositorySettings",
    "Settings",
    "UnsafeConfigWarning",
    "build_repositories",
    "configure",
    "find_project_file",
    "install",
    "load_settings",
]

#: Name of a standalone configuration file (project, user or site).
CONFIG_FILE_NAME = "secure-import.toml"
#: Name of the user and site configuration files in their platformdirs folders.
USER_FILE_NAME = "config.toml"
_MAX_CONFIG_BYTES = 1024 * 1024

#: A clock slack above this can only be set as ``unsafe_clock_slack``: expiry
#: is what defeats freeze attacks.
MAX_SAFE_CLOCK_SLACK = timedelta(hours=1)

#: Environment variables read by :func:`load_settings` (the directory
#: variables are also read by :meth:`secure_import.store.paths.Paths.default`).
ENVIRONMENT = {
    "SECURE_IMPORT_CONFIG": "explicit configuration file",
    "SECURE_IMPORT_NO_PROJECT": "1: do not look for a project file (services)",
    "SECURE_IMPORT_CACHE_DIR": "cache directory",
    "SECURE_IMPORT_STATE_DIR": "trust-state directory",
    "SECURE_IMPORT_LOG_DIR": "audit log directory",
    "SECURE_IMPORT_SITE": "1: platformdirs' site directories",
    "SECURE_IMPORT_CLOCK_SLACK": "clock slack in seconds (at most 3600)",
    "SECURE_IMPORT_LOCK_FILE": "lock file",
    "SECURE_IMPORT_FROZEN": "1: frozen mode (exactly what the lock file pins)",
    "SECURE_IMPORT_OFFLINE": "1: never contact a repository server",
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

_GLOBAL_KEYS = frozenset(
    {
        "cache_dir",
        "state_dir",
        "log_dir",
        "site",
        "clock_slack",
        "unsafe_clock_slack",
        "lock_file",
        "frozen",
        "repositories",
    }
)
_REPO_KEYS = frozenset(
    {
        "url",
        "keys",
        "threshold",
        "root_version",
        "modules",
        "ca_bundle",
        "truststore",
        "refresh",
        "client_cert",
        "client_key",
        "auth",
        "unsafe_all_modules",
    }
)
_AUTH_KEYS = frozenset({"env", "file", "header", "scheme"})
_REFRESH = ("always", "offline")


class UnsafeConfigWarning(UserWarning):
    """An ``unsafe_*`` setting is in effect: security is weaker than the defaults."""


# --- the resolved settings -------------------------------------------------


@dataclass(frozen=True)
class AuthSettings:
    """Where a repository's credential comes from (never the credential itself)."""

    env: str | None = None
    file: Path | None = None
    header: str = "Authorization"
    #: Prefix of the header value; ``None`` sends the secret alone.
    scheme: str | None = "Bearer"

    def load(self) -> AuthHeader:
        """Read the secret now.

        Raises:
            ConfigError: the variable is unset, the file unreadable, or the
                value is not a valid header value (the message never contains it).
        """
        if self.env is not None:
            return AuthHeader.from_env(self.env, header=self.header, scheme=self.scheme)
        assert self.file is not None
        return AuthHeader.from_file(self.file, header=self.header, scheme=self.scheme)

    def describe(self) -> str:
        where = f"${self.env}" if self.env is not None else str(self.file)
        return f"{self.header} from {where}"


@dataclass(frozen=True)
class RepositorySettings:
    """One configured repository, as a :class:`~secure_import.Repository` will get it."""

    name: str
    url: str
    keys: tuple[Path, ...]
    threshold: int = 1
    #: Version of the publisher's trust root the pinned keys belong to.
    root_version: int = 1
    #: ``None`` only with ``unsafe_all_modules``: then whatever the manifest declares.
    modules: frozenset[str] | None = None
    ca_bundle: Path | None = None
    truststore: bool = False
    refresh: str = "always"
    client_cert: Path | None = None
    client_key: Path | None = None
    auth: AuthSettings | None = None
    unsafe_all_modules: bool = False
    #: The file (or "command line") that defined the repository last.
    source: str = ""

    @property
    def offline(self) -> bool:
        return self.refresh == "offline"

    def transport(self) -> TransportOptions:
        """Credentials and TLS options for the fetcher (reads the secret).

        Raises:
            ConfigError: the credential cannot be read.
        """
        return TransportOptions(
            auth=None if self.auth is None else self.auth.load(),
            client_cert=self.client_cert,
            client_key=self.client_key,
            use_truststore=self.truststore,
        )


@dataclass(frozen=True)
class Overrides:
    """Command-line values: the highest precedence.  ``None`` means "not given"."""

    cache_dir: Path | None = None
    state_dir: Path | None = None
    log_dir: Path | None = None
    site: bool | None = None
    clock_slack: timedelta | None = None
    lock_file: Path | None = None
    frozen: bool | None = None
    offline: bool | None = None
    #: A repository given on the command line (``--repo URL --key F``).
    repository: RepositorySettings | None = None


@dataclass(frozen=True)
class Settings:
    """The effective configuration after every layer was applied."""

    repositories: tuple[RepositorySettings, ...] = ()
    cache_dir: Path | None = None
    state_dir: Path | None = None
    log_dir: Path | None = None
    site: bool = False
    clock_slack: timedelta = DEFAULT_CLOCK_SLACK
    lock_file: Path | None = None
    frozen: bool = False
    #: Files read, lowest precedence first.
    files: tuple[str, ...] = ()
    #: ``"file: key"`` for every unsafe setting in effect.
    unsafe: tuple[str, ...] = ()
    #: Where each global value came from (``"default"``, a file, ``$VAR``, ...).
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> Paths:
        return Paths.default(
            cache_dir=self.cache_dir,
            state_dir=self.state_dir,
            log_dir=self.log_dir,
            site=self.site,
        )

    @property
    def limits(self) -> Limits:
        return Limits(clock_slack=self.clock_slack)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description (``secure-import config``); no secrets."""
        paths = self.paths
        return {
            "files": list(self.files),
            "cache_dir": str(paths.cache_dir),
            "state_dir": str(paths.state_dir),
            "log_dir": str(paths.log_dir),
            "site": self.site,
            "clock_slack_seconds": self.clock_slack.total_seconds(),
            "lock_file": None if self.lock_file is None else str(self.lock_file),
            "frozen": self.frozen,
            "unsafe": list(self.unsafe),
            "origins": dict(self.origins),
            "repositories": [
                {
                    "name": r.name,
                    "url": r.url,
                    "keys": [str(k) for k in r.keys],
                    "threshold": r.threshold,
                    "root_version": r.root_version,
                    "modules": None if r.modules is None else sorted(r.modules),
                    "ca_bundle": None if r.ca_bundle is None else str(r.ca_bundle),
                    "truststore": r.truststore,
                    "refresh": r.refresh,
                    "client_cert": None if r.client_cert is None else str(r.client_cert),
                    "auth": None if r.auth is None else r.auth.describe(),
                    "unsafe_all_modules": r.unsafe_all_modules,
                    "source": r.source,
                }
                for r in self.repositories
            ],
        }


# --- reading one file --------------------------------------------------------


@dataclass
class _Layer:
    """One parsed file: its global values and its repository tables (raw fields)."""

    kind: str  # "site" | "user" | "project" | "explicit"
    label: str  # "path/pyproject.toml [tool.secure-import]"
    path: Path
    values: dict[str, Any]
    repos: dict[str, dict[str, Any]]


def _fail(label: str, key: str, message: str, **kw: Any) -> ConfigError:
    return ConfigError(f"{label}: {key}: {message}", check="config", **kw)


def _unknown(label: str, key: str, allowed: frozenset[str]) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return _fail(label, key, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the configuration file ({exc.strerror or exc})",
            check="config-file",
            got=str(path),
        ) from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file", check="config-file", got=str(path))
    if info.st_mode & 0o002:
        raise ConfigError(
            f"{path}: the configuration file is writable by every user; refusing it",
            check="config-file-mode",
            got=stat.filemode(info.st_mode),
        )
    if info.st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the configuration file is too large", check="config-file")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", check="config-syntax") from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the configuration file ({exc})", check="config-file"
        ) from exc


def _table_of(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The secure-import table of a file and a label for messages."""
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("secure-import") if isinstance(tool, dict) else None
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.secure-import] must be a table", check="config")
        return table, f"{path} [tool.secure-import]"
    return data, str(path)


def _path(label: str, key: str, value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _fail(label, key, "must be a non-empty path string", got=repr(value))
    expanded = Path(os.path.expanduser(value))
    return expanded if expanded.is_absolute() else base / expanded


def _bool(label: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(label, key, "must be true or false", got=repr(value))
    return value


def _seconds(label: str, key: str, value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _fail(label, key, "must be a number of seconds >= 0", got=repr(value))
    if value != value or value > 10 * 365 * 86400:  # NaN, absurd
        raise _fail(label, key, "must be a finite, sensible number of seconds", got=repr(value))
    return timedelta(seconds=value)


def _strings(label: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(label, key, "must be a list of non-empty strings", got=repr(value))
    return list(value)


def _parse_repo(label: str, name: str, table: object, base: Path) -> dict[str, Any]:
    where = f"repositories.{name}"
    if not isinstance(table, dict):
        raise _fail(label, where, "must be a table")
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or not name.isascii():
        raise _fail(label, where, "repository names use letters, digits, '-', '_' and '.'")
    out: dict[str, Any] = {}
    for key, value in table.items():
        k = f"{where}.{key}"
        if key not in _REPO_KEYS:
            raise _unknown(label, k, _REPO_KEYS)
        if key == "url":
            if not isinstance(value, str):
                raise _fail(label, k, "must be a string", got=repr(value))
            try:
                parse_origin(value)
            except SecureImportError as exc:
                raise _fail(label, k, f"{exc.detail} (got {value!r})") from exc
            out[key] = value
        elif key == "keys":
            out[key] = tuple(_path(label, k, v, base) for v in _strings(label, k, value))
            if not out[key]:
                raise _fail(label, k, "at least one pinned key file is required")
        elif key in ("threshold", "root_version"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(label, k, "must be an integer >= 1", got=repr(value))
            out[key] = value
        elif key == "modules":
            names = _strings(label, k, value)
            for item in names:
                if not (item.isidentifier() and item.isascii()):
                    raise _fail(
                        label, k, "allowed modules are top-level identifiers", got=repr(item)
                    )
                if is_never_remote(item):
                    raise _fail(
                        label,
                        k,
                        f"{item!r} is never served remotely (start-up hook, "
                        "standard library, or secure_import itself)",
                    )
            out[key] = frozenset(names)
        elif key in ("ca_bundle", "client_cert", "client_key"):
            out[key] = _path(label, k, value, base)
        elif key in ("truststore", "unsafe_all_modules"):
            out[key] = _bool(label, k, value)
        elif key == "refresh":
            if value not in _REFRESH:
                raise _fail(label, k, f"must be one of {', '.join(_REFRESH)}", got=repr(value))
            out[key] = value
        elif key == "auth":
            out[key] = _parse_auth(label, k, value, base)
    return out


def _parse_auth(label: str, where: str, value: object, base: Path) -> AuthSettings:
    if not isinstance(value, dict):
        raise _fail(label, where, 'must be a table such as { env = "ACME_TOKEN" }')
    for key in value:
        if key not in _AUTH_KEYS:
            raise _unknown(label, f"{where}.{key}", _AUTH_KEYS)
    env, file = value.get("env"), value.get("file")
    if (env is None) == (file is None):
        raise _fail(label, where, "give exactly one of env (a variable name) or file")
    if env is not None and (not isinstance(env, str) or not env.isidentifier()):
        raise _fail(label, f"{where}.env", "must be an environment variable name", got=repr(env))
    header = value.get("header", "Authorization")
    if not isinstance(header, str) or not header:
        raise _fail(label, f"{where}.header", "must be a header name", got=repr(header))
    default_scheme = "Bearer" if header.lower() == "authorization" else None
    scheme = value.get("scheme", default_scheme)
    if scheme is not None and (
        not isinstance(scheme, str) or not scheme.isprintable() or " " in scheme
    ):
        raise _fail(
            label, f"{where}.scheme", "must be one word such as Bearer or token", got=repr(scheme)
        )
    return AuthSettings(
        env=env,
        file=None if file is None else _path(label, f"{where}.file", file, base),
        header=header,
        scheme=scheme or None,
    )


def _parse_layer(kind: str, path: Path) -> _Layer | None:
    data = _read_toml(path)
    table, label = _table_of(path, data)
    if table is None:
        return None
    base = path.parent
    values: dict[str, Any] = {}
    repos: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if key not in _GLOBAL_KEYS:
            raise _unknown(label, key, _GLOBAL_KEYS)
        if key in ("cache_dir", "state_dir", "log_dir", "lock_file"):
            values[key] = _path(label, key, value, base)
        elif key in ("site", "frozen"):
            values[key] = _bool(label, key, value)
        elif key == "clock_slack":
            slack = _seconds(label, key, value)
            if slack > MAX_SAFE_CLOCK_SLACK:
                raise _fail(
                    label,
                    key,
                    f"more than {MAX_SAFE_CLOCK_SLACK.total_seconds():.0f} "
                    "seconds weakens expiry; spell it unsafe_clock_slack if you must",
                )
            values[key] = slack
        elif key == "unsafe_clock_slack":
            if "clock_slack" in table:
                raise _fail(label, key, "set clock_slack or unsafe_clock_slack, not both")
            values["clock_slack"] = _seconds(label, key, value)
            values["unsafe_clock_slack"] = True
        elif key == "repositories":
            if not isinstance(value, dict):
                raise _fail(label, key, "must be a table of named repositories")
            for name, repo in value.items():
                repos[name] = _parse_repo(label, name, repo, base)
    return _Layer(kind, label, path, values, repos)


# --- merging ------------------------------------------------------------------


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


def _served_by(merged: _Merged) -> dict[str, str]:
    """Top-level name -> repository name, for the names trusted layers let be served."""
    out: dict[str, str] = {}
    for name, fields in merged.repos.items():
        for module in fields.get("modules") or ():
            out.setdefault(module, name)
    return out


def _apply_project(merged: _Merged, layer: _Layer) -> None:
    """The project layer: refuse anything that would widen trust, then apply."""
    label = layer.label
    forbidden = {
        "state_dir": "would reset the trust state (high-water marks, rotated roots)",
        "log_dir": "would move the audit log",
        "site": "would change which directories hold trust state",
        "unsafe_clock_slack": "unsafe_* settings are refused in a project file",
    }
    for key, why in forbidden.items():
        if key in layer.values:
            raise _fail(label, key, f"a project file may only tighten trust: it {why}")
    slack = layer.values.get("clock_slack")
    current = merged.values.get("clock_slack", DEFAULT_CLOCK_SLACK)
    if slack is not None and slack > current:
        raise _fail(
            label,
            "clock_slack",
            "a project file may only lower the clock slack",
            expected=f"<= {current.total_seconds():g} s",
            got=f"{slack.total_seconds():g} s",
        )
    if layer.values.get("frozen") is False and merged.values.get("frozen"):
        raise _fail(label, "frozen", "a project file may not leave frozen mode")
    if (
        "lock_file" in layer.values
        and "lock_file" in merged.values
        and (layer.values["lock_file"] != merged.values["lock_file"])
    ):
        raise _fail(
            label,
            "lock_file",
            "a project file may not replace the lock file set by "
            f"{merged.origins.get('lock_file')}",
        )
    served = _served_by(merged)
    urls = {fields.get("url"): name for name, fields in merged.repos.items()}
    for name, fields in layer.repos.items():
        where = f"repositories.{name}"
        if fields.get("unsafe_all_modules"):
            raise _fail(
                label,
                f"{where}.unsafe_all_modules",
                "unsafe_* settings are refused in a project file",
            )
        if "auth" in fields:
            raise _fail(
                label,
                f"{where}.auth",
                "credentials may only be configured in the user, site or explicit "
                "configuration, or the environment: a project file could send them "
                "to a server of its choosing",
            )
        base = merged.repos.get(name)
        if base is None:
            other = urls.get(fields.get("url"))
            if other is not None:
                raise _fail(
                    label,
                    f"{where}.url",
                    f"this URL is already configured as "
                    f"repositories.{other} by {merged.repo_sources[other]}; restate it "
                    "under that name to restrict it",
                )
            if "modules" not in fields:
                raise _fail(
                    label,
                    f"{where}.modules",
                    "a repository added by a project file must list its modules",
                )
            for module in sorted(fields["modules"]):
                if module in served:
                    raise _fail(
                        label,
                        f"{where}.modules",
                        f"{module!r} is already served by repositories."
                        f"{served[module]}; a project file may not claim it",
                    )
            continue
        _check_restriction(label, where, base, fields)
    merged.files.append(str(layer.path))
    for key, value in layer.values.items():
        merged.values[key] = value
        merged.origins[key] = label
    for name, fields in layer.repos.items():
        merged.repos.setdefault(name, {}).update(fields)
        merged.repo_sources[name] = label


def _check_restriction(
    label: str, where: str, base: dict[str, Any], fields: dict[str, Any]
) -> None:
    """A project restating a trusted repository may only narrow it."""
    if "keys" in fields and _key_ids(fields["keys"]) != _key_ids(base.get("keys", ())):
        raise _fail(
            label,
            f"{where}.keys",
            "a project file may not change the keys pinned for a repository configured elsewhere",
        )
    for key in ("url", "root_version", "ca_bundle", "truststore", "client_cert", "client_key"):
        if key in fields and fields[key] != base.get(key, _DEFAULTS.get(key)):
            raise _fail(
                label,
                f"{where}.{key}",
                "a project file may not change this field of "
                "a repository configured elsewhere (only narrow modules, raise the "
                "threshold or set refresh)",
            )
    if "threshold" in fields and fields["threshold"] < base.get("threshold", 1):
        raise _fail(
            label,
            f"{where}.threshold",
            "a project file may not lower the threshold",
            expected=f">= {base.get('threshold', 1)}",
            got=fields["threshold"],
        )
    if "modules" in fields and base.get("modules") is not None:
        extra = sorted(fields["modules"] - base["modules"])
        if extra:
            raise _fail(
                label,
                f"{where}.modules",
                "a project file may not allow more modules "
                f"than the repository's own configuration: {', '.join(extra)}",
            )


_DEFAULTS: dict[str, Any] = {
    "truststore": False,
    "threshold": 1,
    "refresh": "always",
    "root_version": 1,
}


def _key_ids(paths: Sequence[Path]) -> frozenset[str] | None:
    """The key ids of key files (``None`` if one is unreadable: never equal)."""
    try:
        return frozenset(load_public_key_file(p).key_id for p in paths)
    except SecureImportError:
        return None


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
    for key in ("site", "frozen"):
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


def _finish_repo(
    name: str, fields: dict[str, Any], source: str, offline: bool | None
) -> RepositorySettings:
    label = source
    where = f"repositories.{name}"
    for required in ("url", "keys"):
        if required not in fields:
            raise _fail(label, f"{where}.{required}", "is required")
    keys = fields["keys"]
    threshold = fields.get("threshold", 1)
    if threshold > len(set(keys)):
        raise _fail(
            label,
            f"{where}.threshold",
            "cannot exceed the number of pinned key files",
            expected=f"<= {len(set(keys))}",
            got=threshold,
        )
    modules = fields.get("modules")
    unsafe_all = fields.get("unsafe_all_modules", False)
    if modules is None and not unsafe_all:
        raise _fail(
            label,
            f"{where}.modules",
            "list the top-level modules this repository may "
            "provide (or, to accept whatever its manifest declares, set "
            "unsafe_all_modules = true)",
        )
    if modules is not None and unsafe_all:
        raise _fail(label, f"{where}.unsafe_all_modules", "contradicts the modules list")
    if fields.get("truststore") and "ca_bundle" in fields:
        raise _fail(
            label, f"{where}.truststore", "use either ca_bundle or the system trust store, not both"
        )
    if "client_key" in fields and "client_cert" not in fields:
        raise _fail(label, f"{where}.client_key", "needs client_cert")
    refresh = fields.get("refresh", "always")
    if offline:
        refresh = "offline"
    return RepositorySettings(
        name=name,
        url=fields["url"],
        keys=keys,
        threshold=threshold,
        root_version=fields.get("root_version", 1),
        modules=modules,
        ca_bundle=fields.get("ca_bundle"),
        truststore=fields.get("truststore", False),
        refresh=refresh,
        client_cert=fields.get("client_cert"),
        client_key=fields.get("client_key"),
        auth=fields.get("auth"),
        unsafe_all_modules=unsafe_all,
        source=source,
    )


# --- discovery ----------------------------------------------------------------


def find_project_file(start: Path | None = None) -> Path | None:
    """Walk up from ``start`` (the working directory) to the project's configuration.

    The first directory holding ``secure-import.toml`` or ``pyproject.toml``
    ends the walk (a ``pyproject.toml`` marks the project root even without a
    ``[tool.secure-import]`` table); ``secure-import.toml`` wins when both exist.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        standalone = directory / CONFIG_FILE_NAME
        if standalone.is_file():
            return standalone
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            return pyproject
    return None


def _user_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / USER_FILE_NAME


def _site_file() -> Path:
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / USER_FILE_NAME


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user_file: Path | None = None,
    site_file: Path | None = None,
    discover_project: bool | None = None,
    warn: bool = True,
) -> Settings:
    """Read every layer and merge them (see the module docstring for the order).

    ``user_file``/``site_file`` replace the platformdirs locations (tests,
    containers).  ``discover_project=None`` walks up unless
    ``$SECURE_IMPORT_NO_PROJECT`` is set.

    Raises:
        ConfigError: a file is unreadable, not valid TOML, has an unknown key
            or a bad value, a project file tries to widen trust, or an
            ``unsafe_*`` setting is used in frozen mode.  The message names
            the file and the key.
    """
    env = os.environ if env is None else env
    overrides = overrides or Overrides()
    merged = _Merged()
    for kind, candidate in (
        ("site", site_file or _site_file()),
        ("user", user_file or _user_file()),
    ):
        if candidate.is_file():
            layer = _parse_layer(kind, candidate)
            if layer is not None:
                _apply(merged, layer)
    if discover_project is None:
        discover_project = not _env_bool(env, "SECURE_IMPORT_NO_PROJECT")
    explicit = (
        Path(path)
        if path is not None
        else (Path(env["SECURE_IMPORT_CONFIG"]) if env.get("SECURE_IMPORT_CONFIG") else None)
    )
    if discover_project:
        project = find_project_file(cwd)
        if project is not None and (explicit is None or project.resolve() != explicit.resolve()):
            layer = _parse_layer("project", project)
            if layer is not None:
                _apply_project(merged, layer)
    if explicit is not None:
        layer = _parse_layer("explicit", explicit)
        if layer is None:
            raise ConfigError(f"{explicit}: has no [tool.secure-import] table", check="config-file")
        _apply(merged, layer)
    offline = _apply_env(merged, env)
    _apply_overrides(merged, overrides)
    if overrides.offline is not None:
        offline = overrides.offline

    repos = [
        _finish_repo(name, fields, merged.repo_sources[name], offline)
        for name, fields in merged.repos.items()
    ]
    if overrides.repository is not None:
        extra = overrides.repository
        if offline:
            extra = replace(extra, refresh="offline")
        repos.insert(0, extra)
    seen: dict[str, str] = {}
    for repo in repos:
        normal = repo.url if repo.url.endswith("/") else repo.url + "/"
        if normal in seen:
            raise ConfigError(
                f"{repo.source}: repositories.{repo.name}.url: the same URL is configured "
                f"twice (also as {seen[normal]})",
                check="config",
            )
        seen[normal] = repo.name
    values = merged.values
    settings = Settings(
        repositories=tuple(repos),
        cache_dir=values.get("cache_dir"),
        state_dir=values.get("state_dir"),
        log_dir=values.get("log_dir"),
        site=values.get("site", site_mode_from_env()),
        clock_slack=values.get("clock_slack", DEFAULT_CLOCK_SLACK),
        lock_file=values.get("lock_file"),
        frozen=values.get("frozen", False),
        files=tuple(merged.files),
        unsafe=tuple(_effective_unsafe(merged, repos)),
        origins={
            k: merged.origins.get(k, "default")
            for k in (
                "cache_dir",
                "state_dir",
                "log_dir",
                "site",
                "clock_slack",
                "lock_file",
                "frozen",
            )
        },
    )
    if settings.frozen and settings.unsafe:
        raise ConfigError(
            "frozen mode refuses unsafe settings: " + "; ".join(settings.unsafe),
            check="frozen-unsafe",
        )
    if settings.frozen and settings.lock_file is None:
        raise ConfigError(
            "frozen mode needs a lock file (lock_file or $SECURE_IMPORT_LOCK_FILE)",
            check="frozen-lock",
        )
    if warn:
        for item in settings.unsafe:
            _warn_unsafe(item)
    return settings


def _warn_unsafe(item: str) -> None:
    """Warn about one unsafe setting, every time (a fresh registry defeats the
    once-per-location de-duplication); the warning points at the file."""
    where = item.split(": ", 1)[0].split(" [", 1)[0]
    warnings.warn_explicit(
        f"secure_import: unsafe setting in effect: {item}",
        UnsafeConfigWarning,
        filename=where,
        lineno=1,
        module="secure_import.settings",
        registry={},
    )


def _effective_unsafe(merged: _Merged, repos: Sequence[RepositorySettings]) -> list[str]:
    out: list[str] = []
    if merged.values.get("unsafe_clock_slack"):
        out.append(f"{merged.origins.get('clock_slack')}: unsafe_clock_slack")
    for repo in repos:
        if repo.unsafe_all_modules:
            out.append(f"{repo.source}: repositories.{repo.name}.unsafe_all_modules")
    return out


# --- building repositories ------------------------------------------------------


def build_repository(repo: RepositorySettings, settings: Settings) -> Repository:
    """A :class:`~secure_import.Repository` for one configured repository.

    Raises:
        ConfigError, KeyFileError, InsecureURLError: as the constructor does;
            also frozen mode without a lock file (never pretend to be frozen).
    """
    if settings.frozen and settings.lock_file is None:
        raise ConfigError("frozen mode needs a lock file", check="frozen")
    transport = repo.transport()
    return Repository(
        repo.url,
        keys=list(repo.keys),
        threshold=repo.threshold,
        root_version=repo.root_version,
        modules=repo.modules,
        ca_bundle=repo.ca_bundle,
        paths=settings.paths,
        limits=settings.limits,
        offline=repo.offline,
        lock=settings.lock_file if settings.frozen else None,
        transport=None if transport.is_default else transport,
    )


def build_repositories(settings: Settings) -> list[Repository]:
    """One repository per configured entry, in precedence order (not installed).

    Raises:
        SecureImportError: the first repository that cannot be built; those
            built before it are closed.
    """
    built: list[Repository] = []
    try:
        for repo in settings.repositories:
            built.append(build_repository(repo, settings))
    except BaseException:
        for repository in built:
            repository.close()
        raise
    return built


_configured: list[Repository] = []


def configure(
    path: str | os.PathLike[str] | None = None, *, overrides: Overrides | None = None
) -> list[Repository]:
    """Install the finder with the repositories from configuration; return them.

    Reads the layers as :func:`load_settings` does (``path`` is the explicit
    file).  Calling it again replaces the repositories a previous call
    installed; repositories added with ``add_repo`` are left alone.

    Raises:
        ConfigError: the configuration is invalid (nothing is installed).
        KeyFileError, InsecureURLError: a pinned key or URL is unusable.
    """
    return install(load_settings(path, overrides=overrides))


def install(settings: Settings) -> list[Repository]:
    """Build the repositories of ``settings`` and install them in the finder
    (replacing those a previous :func:`configure`/:func:`install` installed).

    Raises:
        SecureImportError: a repository cannot be built; nothing changed.
    """
    from secure_import.hook.finder import get_finder

    repositories = build_repositories(settings)
    finder = get_finder()
    for old in _configured:
        finder.remove(old)
        old.close()
    _configured.clear()
    for repository in repositories:
        finder.add(repository)
    _configured.extend(repositories)
    return list(repositories)
