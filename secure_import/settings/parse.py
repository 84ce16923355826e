"""Reading one configuration file strictly: TOML in, a typed layer out, or a
:class:`~secure_import.errors.ConfigError` naming the file and the key."""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from secure_import.errors import ConfigError, SecureImportError
from secure_import.settings.model import (
    _AUTH_KEYS,
    _GLOBAL_KEYS,
    _MAX_CONFIG_BYTES,
    _REFRESH,
    _REPO_KEYS,
    MAX_SAFE_CLOCK_SLACK,
    AuthSettings,
)
from secure_import.transport.mirrors import FALLBACKS
from secure_import.transport.s3 import check_endpoint, parse_s3_url
from secure_import.verify.identity import Identity, identity_from_mapping
from secure_import.verify.names import is_never_remote, normalize_url, parse_origin

# --- reading one file --------------------------------------------------------


@dataclass
class _Layer:
    """One parsed file: its global values and its repository tables (raw fields)."""

    kind: str  # "site" | "user" | "project" | "explicit"
    label: str  # "path/pyproject.toml [tool.secure-import]"
    path: Path
    values: dict[str, Any]
    repos: dict[str, dict[str, Any]]


#: An S3 region name (``us-east-1``, ``eu-central-2``; other stores' own names).
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


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
    # A string where a list is documented is refused, not wrapped: TOML's
    # types are the schema, and ``keys = "a.pub"`` is a typo as likely as a wish.
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
                if value.startswith("s3://"):
                    parse_s3_url(value)
                else:
                    parse_origin(value)
            except SecureImportError as exc:
                raise _fail(label, k, f"{exc.detail} (got {value!r})") from exc
            out[key] = value
        elif key == "s3_endpoint":
            if not isinstance(value, str):
                raise _fail(label, k, "must be a string", got=repr(value))
            try:
                check_endpoint(value)
            except SecureImportError as exc:
                raise _fail(label, k, f"{exc.detail} (got {value!r})") from exc
            out[key] = value
        elif key == "s3_region":
            if not isinstance(value, str) or not _REGION.fullmatch(value):
                raise _fail(label, k, "must be a region name such as eu-west-1", got=repr(value))
            out[key] = value
        elif key == "keys":
            keys = tuple(_path(label, k, v, base) for v in _strings(label, k, value))
            if not keys:
                raise _fail(label, k, "at least one pinned key file is required")
            out[key] = out.get(key, ()) + keys
        elif key == "publishers":
            keys, identities = _parse_publishers(label, k, value, base)
            out["keys"] = out.get("keys", ()) + keys
            out["identities"] = identities
        elif key == "sigstore_trusted_root":
            if value == "public-good":
                out[key] = value
            else:
                out[key] = _path(label, k, value, base)
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
        elif key in ("truststore", "unsafe_all_modules", "unsafe_undeclared_imports"):
            out[key] = _bool(label, k, value)
        elif key == "trust_dependencies":
            if value is True or value == "direct":
                out[key] = "direct"
            elif value is False or value == "no":
                out[key] = "no"
            elif value == "transitive":
                out[key] = "transitive"
            else:
                raise _fail(
                    label, k, 'must be true (one level), false or "transitive"', got=repr(value)
                )
        elif key == "refresh":
            if value not in _REFRESH:
                raise _fail(label, k, f"must be one of {', '.join(_REFRESH)}", got=repr(value))
            out[key] = value
        elif key == "auth":
            out[key] = _parse_auth(label, k, value, base)
        elif key == "mirrors":
            mirrors = []
            for item in _strings(label, k, value):
                try:
                    mirrors.append(normalize_url(item))
                except SecureImportError as exc:
                    raise _fail(label, k, f"{exc.detail} (got {item!r})") from exc
            if len(set(mirrors)) != len(mirrors):
                raise _fail(label, k, "lists a mirror twice")
            out[key] = tuple(mirrors)
        elif key == "fallback":
            if value not in FALLBACKS:
                raise _fail(label, k, f"must be one of {', '.join(FALLBACKS)}", got=repr(value))
            out[key] = value
        elif key == "materialise":
            if isinstance(value, bool):
                out[key] = value
            else:
                names = _strings(label, k, value)
                for item in names:
                    if not (item.isidentifier() and item.isascii()):
                        raise _fail(
                            label,
                            k,
                            "must be true, false or a list of top-level package names",
                            got=repr(item),
                        )
                out[key] = frozenset(names)
    return out


def _parse_publishers(
    label: str, where: str, value: object, base: Path
) -> tuple[tuple[Path, ...], tuple[Identity, ...]]:
    """``[[repositories.NAME.publishers]]``: each table is ``{ key = "FILE" }``
    or a Sigstore identity (``issuer`` plus ``identity``/``repository``/
    ``workflow``/``ref``/``environment``)."""
    if not isinstance(value, list) or not value:
        raise _fail(label, where, "must be a non-empty array of tables ([[...publishers]])")
    keys: list[Path] = []
    identities: list[Identity] = []
    for index, entry in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise _fail(label, at, 'must be a table: { key = "FILE" } or { issuer = ..., ... }')
        if "key" in entry:
            if len(entry) != 1:
                raise _fail(label, at, "a key publisher has only the field key")
            keys.append(_path(label, f"{at}.key", entry["key"], base))
            continue
        try:
            identities.append(identity_from_mapping(entry, source=f"{label}: {at}"))
        except SecureImportError as exc:
            raise _fail(label, at, exc.detail + (f" (got {exc.got})" if exc.got else "")) from exc
    return tuple(keys), tuple(identities)


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
        elif key in (
            "site",
            "frozen",
            "cache_readonly",
            "allow_project_freshness",
            "allow_project_mirrors",
        ):
            values[key] = _bool(label, key, value)
        elif key == "min_throughput":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 30:
                raise _fail(label, key, "must be bytes per second, 1 or more", got=repr(value))
            values[key] = value
        elif key in ("throughput_window", "import_deadline", "failover_after"):
            seconds = _seconds(label, key, value).total_seconds()
            if seconds <= 0 or seconds > 3600:
                raise _fail(label, key, "must be seconds, more than 0 and at most 3600")
            values[key] = seconds
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
