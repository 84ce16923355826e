"""Settings: where state lives, how much we accept, which names are never remote.

Safe defaults are named constants here so a reviewer can read the whole policy
in one place.  Everything is a frozen dataclass: configuration is decided once
when a repository is added and never mutated behind the finder's back.

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
(:func:`secure_import.fsutil.secure_dir`): a real directory owned by the
current user and not writable by group or others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from .errors import InsecureURLError

__all__ = [
    "APP_NAME",
    "BUNDLE_DIR",
    "DEFAULT_CLOCK_SLACK",
    "DEFAULT_EXPIRES_IN",
    "MANIFEST_NAME",
    "NEVER_REMOTE",
    "SYSTEMD_DIR_VARIABLES",
    "Limits",
    "Origin",
    "Paths",
    "is_never_remote",
    "parse_origin",
    "site_mode_from_env",
]

APP_NAME = "secure-import"

#: File name of the signed manifest envelope at the repository root.  Not an
#: identifier, so it can never collide with a module or package name.
MANIFEST_NAME = "secure-import-manifest.json"

#: Folder of per-package bundles: the concatenation of a top-level package's
#: modules in manifest order, named by a digest of their signed entries.  An
#: optimisation only (one request for a cold package); every file in it is
#: verified against the signed manifest exactly as if fetched alone.
BUNDLE_DIR = "secure-import-bundles"

#: Default validity of a freshly signed manifest.
DEFAULT_EXPIRES_IN = timedelta(days=90)

#: How far our clock may be behind the publisher's before "issued in the future"
#: or "expired" is decided.  Small on purpose: expiry is a security boundary.
DEFAULT_CLOCK_SLACK = timedelta(minutes=5)

#: Names that are never served from a remote repository, whatever the
#: configuration says: start-up hooks, and secure_import itself.  Standard
#: library names are added by :func:`is_never_remote`.
NEVER_REMOTE = frozenset({"sitecustomize", "usercustomize", "secure_import", "__main__"})


def is_never_remote(top_level: str) -> bool:
    """True for top-level names no repository may provide (THREATS N2)."""
    return top_level in NEVER_REMOTE or top_level in sys.stdlib_module_names


@dataclass(frozen=True)
class Limits:
    """Caps on what a server may make us do.  Every download is bounded."""

    manifest_max_bytes: int = 16 * 1024 * 1024
    root_max_bytes: int = 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    #: Total deadline for one download, however slowly the bytes drip in (T9).
    download_deadline: float = 60.0
    #: How many files of one package are fetched at once on a cold import.
    max_parallel: int = 8
    #: Longest chain of root rotations walked in one update.
    max_root_rotations: int = 32
    #: A manifest version may not jump further than this past the last accepted
    #: one (fast-forward by a stolen key, THREATS M12).
    max_version_jump: int = 1_000_000
    clock_slack: timedelta = DEFAULT_CLOCK_SLACK


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


def _platform_dir(kind: str, site: bool) -> Path:
    getter = (_SITE_DIRS if site else _USER_DIRS)[kind]
    return Path(getter(APP_NAME, appauthor=False))


def _default_dir(
    kind: str, explicit: str | os.PathLike[str] | None, site: bool | None
) -> Path:
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

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.jsonl"

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


@dataclass(frozen=True)
class Origin:
    """An https origin: scheme, lowercase host, explicit port."""

    host: str
    port: int
    scheme: str = field(default="https")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(url: str) -> tuple[Origin, str]:
    """Split a repository URL into its origin and its base path (ending in ``/``).

    Refuses anything but a plain https URL (THREATS T1, T6): no userinfo
    (``https://good@evil/``), no query or fragment, no empty host.

    Raises:
        InsecureURLError: the URL is not an acceptable https URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InsecureURLError(
            f"not a valid URL: {exc}", check="url", url=url
        ) from exc
    if parts.scheme != "https":
        raise InsecureURLError(
            "only https repositories are accepted",
            check="scheme",
            url=url,
            expected="https",
            got=parts.scheme or "(none)",
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InsecureURLError(
            "credentials in the URL are refused (they confuse which host is meant)",
            check="url-userinfo",
            url=url,
        )
    if not parts.hostname:
        raise InsecureURLError("the URL has no host", check="url-host", url=url)
    if parts.query or parts.fragment:
        raise InsecureURLError(
            "a repository URL may not have a query or fragment", check="url-shape", url=url
        )
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in url):
        raise InsecureURLError(
            "the URL must be printable ASCII (punycode for international hosts)",
            check="url-charset",
            url=url,
        )
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    return Origin(host=parts.hostname.lower(), port=port or 443), path
