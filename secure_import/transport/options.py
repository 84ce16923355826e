"""How to reach a private repository: its credential header and TLS options.

Kept apart from the client so that configuration code (settings, child
descriptions) can name these without importing the network stack, and so the
rules for a credential live in one place:

- the secret comes from an environment variable or a file, never from a
  configuration file's text; ``repr``/``str`` never show it;
- a header that carries transport policy (``Host``, ``Accept-Encoding``,
  ``If-None-Match``, ...) cannot be used for a credential;
- values that would inject headers (CR/LF, control characters, non-ASCII)
  are refused when the header is built;
- :func:`scrub_secret` removes the value from an error's text, so no message,
  ``repr`` or audit record carries it.

Which origin a credential is sent to is the client's decision
(:class:`~secure_import.transport.https.Fetcher`: only the configured origin;
mirrors never receive it, see :mod:`secure_import.transport.mirrors`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from secure_import.errors import ConfigError, RequestBuildError, TransportError

__all__ = ["AuthHeader", "TransportOptions", "scrub_secret"]

_MAX_SECRET_BYTES = 16 * 1024
#: Headers an authentication setting may not replace: they carry our transport
#: policy (no compression, exact host), not credentials.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "accept-encoding",
        "content-length",
        "transfer-encoding",
        "connection",
        "if-none-match",
        "cookie",
    }
)
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True, repr=False)
class AuthHeader:
    """A credential header for a private repository (``Authorization: Bearer ...``).

    Build it with :meth:`from_env` or :meth:`from_file`: the secret comes from
    an environment variable or a file, never from a configuration file's text.
    ``repr`` and ``str`` never show the value; ``source`` says where it came
    from, for messages.
    """

    name: str
    value: str = field(compare=False)
    source: str = "(given)"
    #: How to read the credential again (``("env"|"file", where, scheme)``),
    #: for child interpreters; ``None`` when it was handed over as a value.
    reload: tuple[str, str, str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _TOKEN_CHARS:
            raise ConfigError(
                "an authentication header name must be an HTTP token",
                check="auth-header",
                got=repr(self.name),
            )
        if self.name.lower() in _RESERVED_HEADERS:
            raise ConfigError(
                "this header cannot carry credentials (it is part of the transport policy)",
                check="auth-header",
                got=self.name,
            )
        if not self.value or any(not (0x20 <= ord(ch) <= 0x7E) for ch in self.value):
            # CR/LF would inject headers; non-ASCII is not a valid header value.
            raise ConfigError(
                f"the credential from {self.source} is empty or has characters not allowed "
                "in an HTTP header (control characters, line breaks, non-ASCII)",
                check="auth-value",
            )

    def __repr__(self) -> str:
        return f"AuthHeader(name={self.name!r}, value='***', source={self.source!r})"

    __str__ = __repr__

    @classmethod
    def from_env(
        cls, variable: str, *, header: str = "Authorization", scheme: str | None = "Bearer"
    ) -> AuthHeader:
        """The header value is ``scheme + " " + $variable`` (or just the variable).

        Raises:
            ConfigError: the variable is unset or empty, or the value is not a
                valid header value.
        """
        secret = os.environ.get(variable)
        if not secret:
            raise ConfigError(
                f"environment variable {variable} (repository credential) is unset or empty",
                check="auth-env",
                got=variable,
            )
        return cls(
            header,
            _with_scheme(scheme, secret.strip()),
            source=f"${variable}",
            reload=("env", variable, scheme),
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        header: str = "Authorization",
        scheme: str | None = "Bearer",
    ) -> AuthHeader:
        """Read the secret from a file (one trailing newline stripped).

        Raises:
            ConfigError: missing, unreadable, not a regular file, too large, empty.
        """
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise ConfigError(
                f"cannot read the credential file {name}: {exc.strerror or type(exc).__name__}",
                check="auth-file",
                got=name,
            ) from exc
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(
                    f"the credential file {name} is not a regular file",
                    check="auth-file",
                    got=name,
                )
            data = handle.read(_MAX_SECRET_BYTES + 1)
        if len(data) > _MAX_SECRET_BYTES:
            raise ConfigError(
                f"the credential file {name} is too large", check="auth-file", got=name
            )
        try:
            secret = data.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"the credential file {name} is not ASCII text", check="auth-file", got=name
            ) from exc
        if not secret:
            raise ConfigError(f"the credential file {name} is empty", check="auth-file", got=name)
        return cls(header, _with_scheme(scheme, secret), source=name, reload=("file", name, scheme))


def _with_scheme(scheme: str | None, secret: str) -> str:
    return f"{scheme} {secret}" if scheme else secret


@dataclass(frozen=True)
class TransportOptions:
    """How to reach a private repository: credentials, client certificate, trust store.

    ``client_cert``/``client_key`` are PEM files (the key may be inside the
    certificate file; then leave ``client_key`` unset).  ``use_truststore``
    verifies the server against the operating system's trust store through the
    optional ``truststore`` package instead of certifi's bundle; it cannot be
    combined with a ``ca_bundle``.
    """

    auth: AuthHeader | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    use_truststore: bool = False

    @property
    def is_default(self) -> bool:
        return self == TransportOptions()

    def for_mirror(self) -> TransportOptions:
        """The options a mirror of the repository is reached with: the same
        trust store choice, but no credential header and no client
        certificate (a mirror is untrusted transport; it never learns the
        repository's secrets or the client's identity)."""
        return TransportOptions(use_truststore=self.use_truststore)


def scrub_secret(exc: BaseException, secret: str) -> None:
    """Remove ``secret`` (and its bare token part) from an error's text in place."""
    needles = {secret, secret.rsplit(" ", 1)[-1]}
    needles = {n for n in needles if len(n) >= 4}

    def clean(value: object) -> object:
        if isinstance(value, str):
            for needle in needles:
                value = value.replace(needle, "***")
        return value

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransportError | RequestBuildError):
            for attr in ("detail", "check", "url", "expected", "got"):
                setattr(current, attr, clean(getattr(current, attr)))
        if isinstance(current, ImportError) and current.msg is not None:
            current.msg = str(clean(current.msg))
        current.args = tuple(clean(a) for a in current.args)
        current = current.__cause__ or current.__context__
