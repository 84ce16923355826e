"""Merging the layers by precedence (command line, environment, explicit file,
project file, user file, site file, defaults), with the project layer only
ever tightening trust."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from secure_import.config import APP_NAME, DEFAULT_CLOCK_SLACK, Limits
from secure_import.errors import ConfigError, SecureImportError
from secure_import.settings.model import (
    _FALSE,
    _TRUE,
    CONFIG_FILE_NAME,
    MAX_SAFE_CLOCK_SLACK,
    USER_FILE_NAME,
    IgnoredConfigWarning,
    Overrides,
    RepositorySettings,
    Settings,
    UnsafeConfigWarning,
)
from secure_import.settings.parse import _fail, _Layer, _parse_layer, _seconds
from secure_import.store.fsutil import trust_problem
from secure_import.store.keyfiles import load_public_key_file
from secure_import.store.paths import site_mode_from_env
from secure_import.verify.names import normalize_url

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
        "cache_dir": "would move the cache (and what `cache clear` deletes); a committed "
        "cache could stand in for the server",
        "state_dir": "would reset the trust state (high-water marks, rotated roots)",
        "log_dir": "would move the audit log",
        "site": "would change which directories hold trust state",
        "unsafe_clock_slack": "unsafe_* settings are refused in a project file",
        "allow_project_freshness": "only the user, site or explicit configuration decides "
        "what a project file may ask for",
    }
    for key, why in forbidden.items():
        if key in layer.values:
            raise _fail(label, key, f"a project file may only tighten trust: it {why}")
    allowed = bool(merged.values.get("allow_project_freshness"))
    lowering: list[str] = [key for key in ("frozen", "lock_file") if key in layer.values]
    if layer.values.get("frozen") is False:
        lowering.remove("frozen")  # leaving frozen mode is refused below
    lowering += [
        f"repositories.{name}.refresh"
        for name, fields in layer.repos.items()
        if fields.get("refresh") == "offline"
    ]
    if lowering and not allowed:
        raise _fail(
            label,
            lowering[0],
            "a project file may not lower freshness (frozen mode, a lock file, offline "
            "repositories) unless the user, site or explicit configuration sets "
            "allow_project_freshness = true: with a committed lock it could hold a "
            "trusted repository on an old release without asking the server",
        )
    for key, tighter, unit in (
        ("min_throughput", "higher", "bytes/s"),
        ("throughput_window", "lower", "s"),
        ("import_deadline", "lower", "s"),
    ):
        if key not in layer.values:
            continue
        current_limit = merged.values.get(key, getattr(Limits, key))
        value = layer.values[key]
        if (value < current_limit) if tighter == "higher" else (value > current_limit):
            raise _fail(
                label,
                key,
                f"a project file may only tighten the transport limits ({key} only {tighter})",
                expected=f"{'>=' if tighter == 'higher' else '<='} {current_limit:g} {unit}",
                got=f"{value:g} {unit}",
            )
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
    urls = {_normal(fields.get("url")): name for name, fields in merged.repos.items()}
    for name, fields in layer.repos.items():
        where = f"repositories.{name}"
        for unsafe in ("unsafe_all_modules", "unsafe_undeclared_imports"):
            if fields.get(unsafe):
                raise _fail(
                    label,
                    f"{where}.{unsafe}",
                    "unsafe_* settings are refused in a project file",
                )
        if fields.get("trust_dependencies", "no") != "no":
            base_follow = merged.repos.get(name, {}).get("trust_dependencies", "no")
            order = ("no", "direct", "transitive")
            if order.index(fields["trust_dependencies"]) > order.index(base_follow):
                raise _fail(
                    label,
                    f"{where}.trust_dependencies",
                    "following dependency declarations widens trust; only the user, site "
                    "or explicit configuration may turn it on",
                )
        if "auth" in fields:
            raise _fail(
                label,
                f"{where}.auth",
                "credentials may only be configured in the user, site or explicit "
                "configuration, or the environment: a project file could send them "
                "to a server of its choosing",
            )
        if "s3_endpoint" in fields:
            raise _fail(
                label,
                f"{where}.s3_endpoint",
                "an S3 endpoint may only be configured in the user, site or explicit "
                "configuration, or the environment: the AWS credentials sign every request "
                "to it, and a project file could choose the server",
            )
        base = merged.repos.get(name)
        if base is None:
            other = urls.get(_normal(fields.get("url")))
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
    for key in (
        "url",
        "root_version",
        "ca_bundle",
        "truststore",
        "client_cert",
        "client_key",
        "identities",
        "sigstore_trusted_root",
        "s3_endpoint",
        "s3_region",
    ):
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
    if "url" not in fields:
        raise _fail(label, f"{where}.url", "is required")
    keys = fields.get("keys", ())
    identities = fields.get("identities", ())
    if not keys and not identities:
        raise _fail(
            label,
            f"{where}.keys",
            "is required (or Sigstore identities in [[repositories.NAME.publishers]])",
        )
    if "sigstore_trusted_root" in fields and not identities:
        raise _fail(
            label, f"{where}.sigstore_trusted_root", "is set but no Sigstore identity is pinned"
        )
    threshold = fields.get("threshold", 1)
    most = len(set(keys)) + (1 if identities else 0)
    if threshold > most:
        raise _fail(
            label,
            f"{where}.threshold",
            "cannot exceed the number of pinned key files"
            + (" plus one for the Sigstore identities" if identities else ""),
            expected=f"<= {most}",
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
    is_s3 = fields["url"].startswith("s3://")
    for key in ("s3_endpoint", "s3_region") if not is_s3 else ():
        if key in fields:
            raise _fail(label, f"{where}.{key}", "applies to s3:// repositories only")
    for key in ("auth", "client_cert", "truststore") if is_s3 else ():
        if fields.get(key):
            raise _fail(
                label,
                f"{where}.{key}",
                "applies to https repositories; an s3:// repository takes its credentials "
                "from the AWS chain",
            )
    refresh = fields.get("refresh", "always")
    if offline:
        refresh = "offline"
    return RepositorySettings(
        name=name,
        url=fields["url"],
        keys=keys,
        threshold=threshold,
        identities=identities,
        sigstore_trusted_root=fields.get("sigstore_trusted_root"),
        root_version=fields.get("root_version", 1),
        modules=modules,
        ca_bundle=fields.get("ca_bundle"),
        truststore=fields.get("truststore", False),
        refresh=refresh,
        client_cert=fields.get("client_cert"),
        client_key=fields.get("client_key"),
        auth=fields.get("auth"),
        unsafe_all_modules=unsafe_all,
        s3_endpoint=fields.get("s3_endpoint"),
        s3_region=fields.get("s3_region"),
        trust_dependencies=fields.get("trust_dependencies", "no"),
        unsafe_undeclared_imports=fields.get("unsafe_undeclared_imports", False),
        materialise=fields.get("materialise", False),
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
            _trusted_file(kind, candidate)
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
    ignored: list[str] = []
    if discover_project:
        project = find_project_file(cwd)
        if project is not None and (explicit is None or project.resolve() != explicit.resolve()):
            problem = trust_problem(project)
            if problem is not None:
                # Found by walking up, not chosen: another user's file in a
                # shared directory must not configure us.  Ignored, loudly.
                ignored.append(f"{project}: {problem}")
            else:
                layer = _parse_layer("project", project)
                if layer is not None:
                    _apply_project(merged, layer)
    if explicit is not None:
        if explicit.is_file():
            _trusted_file("explicit", explicit)
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
    seen: dict[object, str] = {}
    for repo in repos:
        normal = _normal(repo.url)
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
        ignored=tuple(ignored),
        allow_project_freshness=bool(values.get("allow_project_freshness", False)),
        min_throughput=values.get("min_throughput", Limits.min_throughput),
        throughput_window=values.get("throughput_window", Limits.throughput_window),
        import_deadline=values.get("import_deadline", Limits.import_deadline),
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
    for item in settings.ignored:
        _report_ignored(settings, item, warn=warn)
    return settings


def _report_ignored(settings: Settings, item: str, *, warn: bool) -> None:
    """Warn about and audit one project file ignored as untrusted."""
    from secure_import.store.audit import AuditLog

    message = (
        f"ignored the project configuration file {item} (it could add repositories "
        "and keys for names this program imports)"
    )
    if warn:
        warnings.warn_explicit(
            f"secure_import: {message}",
            IgnoredConfigWarning,
            filename=item.split(": ", 1)[0],
            lineno=1,
            module="secure_import.settings",
            registry={},
        )
    paths = settings.paths
    try:
        AuditLog(paths.audit_log, witness=paths.audit_witness).append(
            "config-ignored", outcome="ignored", code="config-untrusted", message=message
        )
    except SecureImportError as exc:
        warnings.warn(f"secure_import: could not audit it: {exc}", stacklevel=3)


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
        if repo.unsafe_undeclared_imports:
            out.append(f"{repo.source}: repositories.{repo.name}.unsafe_undeclared_imports")
    return out
