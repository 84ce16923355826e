"""The resolved configuration: what a repository and the global policy look like
after every layer was applied, and the names and limits the layers share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from secure_import.config import DEFAULT_CLOCK_SLACK, DEFAULT_LIMITS, Limits
from secure_import.store.paths import Paths
from secure_import.transport.mirrors import DEFAULT_FALLBACK
from secure_import.transport.options import AuthHeader, TransportOptions
from secure_import.verify.identity import Identity

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
    "SECURE_IMPORT_CACHE_READONLY": "1: never write to the cache (a read-only image layer)",
}


_TRUE = frozenset({"1", "true", "yes", "on"})


_FALSE = frozenset({"0", "false", "no", "off", ""})


_GLOBAL_KEYS = frozenset(
    {
        "cache_dir",
        "state_dir",
        "log_dir",
        "site",
        "cache_readonly",
        "clock_slack",
        "unsafe_clock_slack",
        "lock_file",
        "frozen",
        "repositories",
        "allow_project_freshness",
        "allow_project_mirrors",
        "min_throughput",
        "throughput_window",
        "import_deadline",
        "failover_after",
    }
)


_REPO_KEYS = frozenset(
    {
        "url",
        "keys",
        "publishers",
        "sigstore_trusted_root",
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
        "s3_endpoint",
        "s3_region",
        "trust_dependencies",
        "unsafe_undeclared_imports",
        "materialise",
        "mirrors",
        "fallback",
    }
)


_AUTH_KEYS = frozenset({"env", "file", "header", "scheme"})


_REFRESH = ("always", "offline")


class UnsafeConfigWarning(UserWarning):
    """An ``unsafe_*`` setting is in effect: security is weaker than the defaults."""


class IgnoredConfigWarning(UserWarning):
    """A project configuration file was ignored because it cannot be trusted
    (owned by another user, or under a directory others can write: THREATS H1)."""


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
    #: Publishers pinned by Sigstore identity (``[[repositories.NAME.publishers]]``
    #: tables with an ``issuer``); keys and identities share ``threshold``.
    identities: tuple[Identity, ...] = ()
    #: ``"public-good"`` or a trusted_root.json path; ``None``: public-good.
    sigstore_trusted_root: Path | str | None = None
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
    #: ``s3://`` repositories only: the https S3 API endpoint of a non-AWS
    #: store and the bucket's region (credentials come from the AWS chain).
    s3_endpoint: str | None = None
    s3_region: str | None = None
    #: Follow this repository's signed dependency declarations to repositories
    #: not configured here: ``"no"``, ``"direct"`` (one level) or ``"transitive"``.
    trust_dependencies: str = "no"
    #: Let its code import names other repositories serve without declaring them.
    unsafe_undeclared_imports: bool = False
    #: Materialise mode: ``True`` for every package, or the top-level names
    #: written to a private, verified tree so ``__file__`` is a real path.
    materialise: bool | frozenset[str] = False
    #: https mirrors asked after ``url`` (normalised, in order), and the
    #: failover policy (see :mod:`secure_import.transport.mirrors`).
    mirrors: tuple[str, ...] = ()
    fallback: str = DEFAULT_FALLBACK
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
    #: Never write to the cache (``cache_readonly``; see ``Paths.cache_readonly``).
    cache_readonly: bool = False
    #: Files read, lowest precedence first.
    files: tuple[str, ...] = ()
    #: ``"file: key"`` for every unsafe setting in effect.
    unsafe: tuple[str, ...] = ()
    #: Where each global value came from (``"default"``, a file, ``$VAR``, ...).
    origins: Mapping[str, str] = field(default_factory=dict)
    #: ``"file: why"`` for every project file ignored as untrusted (THREATS H1).
    ignored: tuple[str, ...] = ()
    #: A trusted layer lets the project file lower freshness (frozen mode,
    #: its lock file, offline repositories): ``allow_project_freshness``.
    allow_project_freshness: bool = False
    #: A trusted layer lets the project file list mirrors a trusted layer did
    #: not (a mirror learns which names you import): ``allow_project_mirrors``.
    allow_project_mirrors: bool = False
    #: Transport limits (see :class:`secure_import.config.Limits`).
    min_throughput: int = DEFAULT_LIMITS.min_throughput
    throughput_window: float = DEFAULT_LIMITS.throughput_window
    import_deadline: float = DEFAULT_LIMITS.import_deadline
    failover_after: float = DEFAULT_LIMITS.failover_after

    @property
    def paths(self) -> Paths:
        paths = Paths.default(
            cache_dir=self.cache_dir,
            state_dir=self.state_dir,
            log_dir=self.log_dir,
            site=self.site,
        )
        if self.cache_readonly and not paths.cache_readonly:
            # Only ever takes writing away: the environment can add it, never remove it.
            paths = Paths(paths.cache, paths.state, paths.log, cache_readonly=True)
        return paths

    @property
    def limits(self) -> Limits:
        return Limits(
            clock_slack=self.clock_slack,
            min_throughput=self.min_throughput,
            throughput_window=self.throughput_window,
            import_deadline=self.import_deadline,
            failover_after=self.failover_after,
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description (``secure-import config``); no secrets."""
        paths = self.paths
        return {
            "files": list(self.files),
            "cache_dir": str(paths.cache_dir),
            "state_dir": str(paths.state_dir),
            "log_dir": str(paths.log_dir),
            "site": self.site,
            "cache_readonly": paths.cache_readonly,
            "clock_slack_seconds": self.clock_slack.total_seconds(),
            "lock_file": None if self.lock_file is None else str(self.lock_file),
            "frozen": self.frozen,
            "unsafe": list(self.unsafe),
            "ignored": list(self.ignored),
            "allow_project_freshness": self.allow_project_freshness,
            "allow_project_mirrors": self.allow_project_mirrors,
            "min_throughput": self.min_throughput,
            "throughput_window_seconds": self.throughput_window,
            "import_deadline_seconds": self.import_deadline,
            "failover_after_seconds": self.failover_after,
            "origins": dict(self.origins),
            "repositories": [
                {
                    "name": r.name,
                    "url": r.url,
                    "keys": [str(k) for k in r.keys],
                    "identities": [pin.as_dict() for pin in r.identities],
                    "sigstore_trusted_root": None
                    if r.sigstore_trusted_root is None
                    else str(r.sigstore_trusted_root),
                    "threshold": r.threshold,
                    "root_version": r.root_version,
                    "modules": None if r.modules is None else sorted(r.modules),
                    "ca_bundle": None if r.ca_bundle is None else str(r.ca_bundle),
                    "truststore": r.truststore,
                    "refresh": r.refresh,
                    "client_cert": None if r.client_cert is None else str(r.client_cert),
                    "auth": None if r.auth is None else r.auth.describe(),
                    "unsafe_all_modules": r.unsafe_all_modules,
                    "s3_endpoint": r.s3_endpoint,
                    "s3_region": r.s3_region,
                    "trust_dependencies": r.trust_dependencies,
                    "unsafe_undeclared_imports": r.unsafe_undeclared_imports,
                    "materialise": (
                        r.materialise if isinstance(r.materialise, bool) else sorted(r.materialise)
                    ),
                    "mirrors": list(r.mirrors),
                    "fallback": r.fallback,
                    "source": r.source,
                }
                for r in self.repositories
            ],
        }
