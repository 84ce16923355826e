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

Directories are kept as strings: the stores work with ``os`` functions, so a
process that names its directories (arguments or ``SECURE_IMPORT_*_DIR``)
imports neither :mod:`pathlib` nor platformdirs.  The public attributes
(:attr:`Paths.cache_dir`...) are :class:`pathlib.Path` objects, made when read.
"""

from __future__ import annotations

import hashlib
import os

from secure_import._frozen import Frozen
from secure_import.config import APP_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

#: systemd's per-unit directory variables, per kind of directory.
SYSTEMD_DIR_VARIABLES = {
    "cache": "CACHE_DIRECTORY",
    "state": "STATE_DIRECTORY",
    "log": "LOGS_DIRECTORY",
}


_TRUE = frozenset({"1", "true", "yes", "on"})


def _env_dir(variable: str) -> str | None:
    value = os.environ.get(variable)
    return value if value else None


def _systemd_dir(kind: str) -> str | None:
    """``$CACHE_DIRECTORY`` etc.: the first of its colon-separated absolute paths."""
    value = os.environ.get(SYSTEMD_DIR_VARIABLES[kind], "")
    first = value.split(":", 1)[0]
    if not first or not os.path.isabs(first):
        return None
    return os.path.join(first, APP_NAME)


def site_mode_from_env() -> bool:
    """Whether ``SECURE_IMPORT_SITE`` asks for the site-wide directories."""
    return os.environ.get("SECURE_IMPORT_SITE", "").strip().lower() in _TRUE


def _platform_dir(kind: str, site: bool) -> str:
    from collections.abc import Callable

    import platformdirs

    getters: dict[tuple[str, bool], Callable[..., str]] = {
        ("cache", True): platformdirs.site_cache_dir,
        ("state", True): platformdirs.site_state_dir,
        ("log", True): platformdirs.site_log_dir,
        ("cache", False): platformdirs.user_cache_dir,
        ("state", False): platformdirs.user_state_dir,
        ("log", False): platformdirs.user_log_dir,
    }
    return getters[kind, site](APP_NAME, appauthor=False)


def cache_readonly_from_env() -> bool:
    """Whether ``SECURE_IMPORT_CACHE_READONLY`` declares the cache read-only
    (an image layer): nothing is ever written to it.  It can only take
    writing away, never trust anything more."""
    return os.environ.get("SECURE_IMPORT_CACHE_READONLY", "").strip().lower() in _TRUE


def default_dir(kind: str) -> str:
    """The ``kind`` (``"cache"``, ``"state"`` or ``"log"``) directory of
    :meth:`Paths.default` without arguments, alone (the others are not
    computed: platformdirs is asked only if the environment names none)."""
    return _default_dir(kind, None, None)


def _default_dir(kind: str, explicit: str | os.PathLike[str] | None, site: bool | None) -> str:
    if explicit is not None:
        return os.fspath(explicit)
    chosen = _env_dir(f"SECURE_IMPORT_{kind.upper()}_DIR") or _systemd_dir(kind)
    if chosen is not None:
        return chosen
    return _platform_dir(kind, site_mode_from_env() if site is None else site)


class Paths(Frozen):
    """Where verified bytes, trust state and the audit log are kept.

    ``cache`` / ``state`` / ``log`` are the directories as strings (what the
    stores use); ``cache_dir`` / ``state_dir`` / ``log_dir`` the same as
    :class:`pathlib.Path` objects.
    """

    _fields = ("cache", "state", "log", "cache_readonly")
    __slots__ = _fields

    cache: str
    state: str
    log: str
    #: Never write to the cache directory (a baked, read-only image layer):
    #: verified bytes are used from memory, nothing is cached, sealed,
    #: materialised or deleted there, and no audit witness is kept in it.
    #: Default: ``SECURE_IMPORT_CACHE_READONLY``.  A cache that turns out
    #: not to be writable is treated the same way (see ``store.cache``).
    cache_readonly: bool

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        log_dir: str | os.PathLike[str],
        cache_readonly: bool | None = None,
    ) -> None:
        object.__setattr__(self, "cache", os.fspath(cache_dir))
        object.__setattr__(self, "state", os.fspath(state_dir))
        object.__setattr__(self, "log", os.fspath(log_dir))
        object.__setattr__(
            self,
            "cache_readonly",
            cache_readonly_from_env() if cache_readonly is None else cache_readonly,
        )

    def __repr__(self) -> str:
        return (
            f"Paths(cache_dir={self.cache!r}, state_dir={self.state!r}, log_dir={self.log!r}, "
            f"cache_readonly={self.cache_readonly!r})"
        )

    @property
    def cache_dir(self) -> Path:
        from pathlib import Path

        return Path(self.cache)

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(self.state)

    @property
    def log_dir(self) -> Path:
        from pathlib import Path

        return Path(self.log)

    @property
    def audit_log_file(self) -> str:
        """The audit log's file name, as a string."""
        return os.path.join(self.log, "audit.jsonl")

    @property
    def audit_log(self) -> Path:
        from pathlib import Path

        return Path(self.audit_log_file)

    @property
    def audit_witness_file(self) -> str:
        """Where the hash of the audit log's newest record is kept apart from
        the log directory (in the cache directory, which ``cache clear``
        leaves alone): a log that vanishes with its directory is then
        reported as a restarted chain, not as a clean one (THREATS H7)."""
        name = hashlib.sha256(os.fsencode(os.path.abspath(self.audit_log_file))).hexdigest()[:32]
        return os.path.join(self.cache, "audit-witness", f"{name}.head")

    @property
    def audit_witness(self) -> Path:
        """:attr:`audit_witness_file` as a :class:`pathlib.Path`."""
        from pathlib import Path

        return Path(self.audit_witness_file)

    @property
    def witness(self) -> Path | None:
        """:attr:`audit_witness`, or ``None`` for a read-only cache (a witness
        that can never move would make ``audit verify`` report every record
        written since as missing)."""
        return None if self.cache_readonly else self.audit_witness

    @property
    def witness_file(self) -> str | None:
        """:attr:`witness` as a string."""
        return None if self.cache_readonly else self.audit_witness_file

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
    from pathlib import Path

    import platformdirs

    override = _env_dir("SECURE_IMPORT_SERVE_CA_DIR")
    if override is not None:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "serve-ca"
