"""Where secure_import keeps its files: platformdirs directories, site mode and
systemd-style overrides.  The only module that asks platformdirs.

Directories follow platformdirs (per user): the *cache* holds only verified
bytes and may be deleted at any time; the *state* directory holds trust state
(high-water marks, rotated roots) that must survive ``cache clear``; the *log*
directory holds the audit log.  For each directory the first of these wins
(:meth:`Paths.default`):

1. an explicit argument (the command line, a configuration file);
2. ``SECURE_IMPORT_CACHE_DIR`` / ``SECURE_IMPORT_STATE_DIR`` /
   ``SECURE_IMPORT_LOG_DIR``;
3. systemd's ``$CACHE_DIRECTORY`` / ``$STATE_DIRECTORY`` / ``$LOGS_DIRECTORY``
   (set for a unit with ``CacheDirectory=`` etc.; the first entry of a
   colon-separated list), with a ``secure-import`` subdirectory;
4. site mode (``site=True`` or ``SECURE_IMPORT_SITE=1``): platformdirs' *site*
   directories (``/var/cache/secure-import``, ``/var/lib/secure-import``,
   ``/var/log/secure-import`` on Linux), for services sharing one cache;
5. platformdirs' *user* directories.

Whatever the source, every directory passes the same checks when used
(:func:`secure_import.store.fsutil.secure_dir`): a real directory owned by the
current user and not writable by group or others.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from secure_import.config import APP_NAME

#: systemd's per-unit directory variables, per kind of directory.
SYSTEMD_DIR_VARIABLES = {
    "cache": "CACHE_DIRECTORY",
    "state": "STATE_DIRECTORY",
    "log": "LOGS_DIRECTORY",
}


_TRUE = frozenset({"1", "true", "yes", "on"})


def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


def _systemd_dir(kind: str) -> Path | None:
    """``$CACHE_DIRECTORY`` etc.: the first of its colon-separated absolute paths."""
    value = os.environ.get(SYSTEMD_DIR_VARIABLES[kind], "")
    first = value.split(":", 1)[0]
    if not first or not os.path.isabs(first):
        return None
    return Path(first) / APP_NAME


def site_mode_from_env() -> bool:
    """Whether ``SECURE_IMPORT_SITE`` asks for the site-wide directories."""
    return os.environ.get("SECURE_IMPORT_SITE", "").strip().lower() in _TRUE


_SITE_DIRS: dict[str, Callable[..., str]] = {
    "cache": platformdirs.site_cache_dir,
    "state": platformdirs.site_state_dir,
    "log": platformdirs.site_log_dir,
}


_USER_DIRS: dict[str, Callable[..., str]] = {
    "cache": platformdirs.user_cache_dir,
    "state": platformdirs.user_state_dir,
    "log": platformdirs.user_log_dir,
}


def cache_readonly_from_env() -> bool:
    """Whether ``SECURE_IMPORT_CACHE_READONLY`` declares the cache read-only
    (an image layer): nothing is ever written to it.  It can only take
    writing away, never trust anything more."""
    return os.environ.get("SECURE_IMPORT_CACHE_READONLY", "").strip().lower() in _TRUE


def _platform_dir(kind: str, site: bool) -> Path:
    getter = (_SITE_DIRS if site else _USER_DIRS)[kind]
    return Path(getter(APP_NAME, appauthor=False))


def _default_dir(kind: str, explicit: str | os.PathLike[str] | None, site: bool | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    chosen = _env_dir(f"SECURE_IMPORT_{kind.upper()}_DIR") or _systemd_dir(kind)
    if chosen is not None:
        return chosen
    return _platform_dir(kind, site_mode_from_env() if site is None else site)


@dataclass(frozen=True)
class Paths:
    """Where verified bytes, trust state and the audit log are kept."""

    cache_dir: Path
    state_dir: Path
    log_dir: Path
    #: Never write to the cache directory (a baked, read-only image layer):
    #: verified bytes are used from memory, nothing is cached, sealed,
    #: materialised or deleted there, and no audit witness is kept in it.
    #: Default: ``SECURE_IMPORT_CACHE_READONLY``.  A cache that turns out
    #: not to be writable is treated the same way (see ``store.cache``).
    cache_readonly: bool = field(default_factory=cache_readonly_from_env)

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.jsonl"

    @property
    def audit_witness(self) -> Path:
        """Where the hash of the audit log's newest record is kept apart from
        the log directory (in the cache directory, which ``cache clear``
        leaves alone): a log that vanishes with its directory is then
        reported as a restarted chain, not as a clean one (THREATS H7)."""
        name = hashlib.sha256(os.fsencode(os.path.abspath(self.audit_log))).hexdigest()[:32]
        return self.cache_dir / "audit-witness" / f"{name}.head"

    @property
    def witness(self) -> Path | None:
        """:attr:`audit_witness`, or ``None`` for a read-only cache (a witness
        that can never move would make ``audit verify`` report every record
        written since as missing)."""
        return None if self.cache_readonly else self.audit_witness

    @classmethod
    def default(
        cls,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        site: bool | None = None,
    ) -> Paths:
        """Explicit arguments, then ``SECURE_IMPORT_*_DIR``, then systemd's
        ``$CACHE_DIRECTORY``/``$STATE_DIRECTORY``/``$LOGS_DIRECTORY``, then
        platformdirs' site directories (``site=True``, or ``None`` and
        ``SECURE_IMPORT_SITE=1``) or user directories.

        Nothing is created or checked here; the stores check each directory
        (owner, mode, not a symlink) when they first use it.
        """
        return cls(
            cache_dir=_default_dir("cache", cache_dir, site),
            state_dir=_default_dir("state", state_dir, site),
            log_dir=_default_dir("log", log_dir, site),
        )

    @classmethod
    def site(cls) -> Paths:
        """platformdirs' site-wide directories, ignoring the environment."""
        return cls(
            cache_dir=_platform_dir("cache", True),
            state_dir=_platform_dir("state", True),
            log_dir=_platform_dir("log", True),
        )


def serve_ca_dir() -> Path:
    """Default directory of ``secure-import serve``'s development CA: under
    the user's data directory (platformdirs), so a ``ca_bundle`` saved in
    code or configuration keeps working across restarts."""
    override = _env_dir("SECURE_IMPORT_SERVE_CA_DIR")
    if override is not None:
        return override
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "serve-ca"
