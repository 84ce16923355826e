"""Settings: where state lives, how much we accept, which names are never remote.

Safe defaults are named constants here so a reviewer can read the whole policy
in one place.  Everything is a frozen dataclass: configuration is decided once
when a repository is added and never mutated behind the finder's back.

Directories follow platformdirs (per user): the *cache* holds only verified
bytes and may be deleted at any time; the *state* directory holds trust state
(high-water marks, rotated roots) that must survive ``cache clear``; the *log*
directory holds the audit log.  Each can be overridden with an environment
variable (``SECURE_IMPORT_CACHE_DIR``, ``SECURE_IMPORT_STATE_DIR``,
``SECURE_IMPORT_LOG_DIR``) or per call.
"""

from __future__ import annotations

import os
import sys
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
    "Limits",
    "MANIFEST_NAME",
    "NEVER_REMOTE",
    "Origin",
    "Paths",
    "is_never_remote",
    "parse_origin",
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


def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


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
    ) -> Paths:
        """Explicit arguments, then ``SECURE_IMPORT_*_DIR``, then platformdirs."""
        return cls(
            cache_dir=Path(cache_dir)
            if cache_dir is not None
            else _env_dir("SECURE_IMPORT_CACHE_DIR")
            or Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            state_dir=Path(state_dir)
            if state_dir is not None
            else _env_dir("SECURE_IMPORT_STATE_DIR")
            or Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)),
            log_dir=Path(log_dir)
            if log_dir is not None
            else _env_dir("SECURE_IMPORT_LOG_DIR")
            or Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
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
