"""Merging the layers by precedence (command line, environment, explicit file,
project file, user file, site file, defaults), with the project layer only
ever tightening trust.

:func:`load_settings` reads the layers in order and checks the result as a
whole (each repository complete, no URL twice, frozen mode without unsafe
settings); how one layer is applied lives in
:mod:`secure_import.settings.layers` (trusted files, environment, command
line) and :mod:`secure_import.settings.project` (the tighten-only project
file)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import platformdirs

from secure_import.config import APP_NAME, DEFAULT_CLOCK_SLACK, DEFAULT_LIMITS
from secure_import.errors import ConfigError, SecureImportError
from secure_import.settings.layers import (
    _apply,
    _apply_env,
    _apply_overrides,
    _env_bool,
    _Merged,
    _normal,
    _trusted_file,
)
from secure_import.settings.model import (
    CONFIG_FILE_NAME,
    USER_FILE_NAME,
    IgnoredConfigWarning,
    Overrides,
    RepositorySettings,
    Settings,
    UnsafeConfigWarning,
)
from secure_import.settings.parse import _fail, _parse_layer
from secure_import.settings.project import _apply_project
from secure_import.store.fsutil import trust_problem
from secure_import.store.paths import site_mode_from_env
from secure_import.transport.mirrors import DEFAULT_FALLBACK, check_mirrors

# --- the merged repositories --------------------------------------------------


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
    try:
        mirrors, fallback = check_mirrors(
            fields["url"], fields.get("mirrors", ()), fields.get("fallback", DEFAULT_FALLBACK)
        )
    except SecureImportError as exc:
        raise _fail(label, f"{where}.mirrors", exc.detail, got=exc.got) from exc
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
        mirrors=mirrors,
        fallback=fallback,
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
        cache_readonly=bool(values.get("cache_readonly", False)),
        files=tuple(merged.files),
        unsafe=tuple(_effective_unsafe(merged, repos)),
        ignored=tuple(ignored),
        allow_project_freshness=bool(values.get("allow_project_freshness", False)),
        allow_project_mirrors=bool(values.get("allow_project_mirrors", False)),
        min_throughput=values.get("min_throughput", DEFAULT_LIMITS.min_throughput),
        throughput_window=values.get("throughput_window", DEFAULT_LIMITS.throughput_window),
        import_deadline=values.get("import_deadline", DEFAULT_LIMITS.import_deadline),
        failover_after=values.get("failover_after", DEFAULT_LIMITS.failover_after),
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
                "cache_readonly",
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
        AuditLog(paths.audit_log, witness=paths.witness).append(
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
