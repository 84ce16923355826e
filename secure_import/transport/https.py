"""The only module that talks to the network.

Policy, in order of the attack catalogue (THREATS T1-T10):

- https only; redirects are followed by hand and only within the configured
  origin (same scheme, host and port) and only a few times;
- TLS is always verified, against certifi's bundle (httpx's default), or,
  when the user names a ``ca_bundle``, against that bundle alone, or, when
  asked, against the operating system's trust store (the optional
  ``truststore`` package);
- private repositories: an authentication header (:class:`AuthHeader`) is
  attached per request, and only when the request's origin is exactly the
  configured one (redirects off the origin are refused anyway); its value is
  never put in an error message, a ``repr`` or the audit log (messages built
  here are scrubbed of it); a client certificate (mutual TLS) is loaded into
  the verifying TLS context;
- the environment is ignored (``trust_env=False``): ``HTTPS_PROXY``,
  ``SSL_CERT_FILE`` and ``.netrc`` cannot silently redirect or re-root trust;
- bodies are streamed and capped: the read stops at ``cap + 1`` bytes;
- we ask for ``identity`` and refuse any content encoding, so a compression
  bomb is never expanded;
- every download has a total deadline besides the per-read timeout, so a server
  dripping one byte at a time cannot hold an import for ever; a minimum
  throughput (``Limits.min_throughput`` bytes per second over every
  ``Limits.throughput_window`` seconds, silence included) cuts a drip off
  within seconds; and a caller may pass the deadline of the whole import and
  a cancel event, which every read honours (THREATS T9).

Nothing here decides trust: callers verify every byte this module returns.
"""

from __future__ import annotations

import importlib
import os
import ssl
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from secure_import._guard import busy
from secure_import.config import Limits
from secure_import.errors import (
    ConfigError,
    ConnectionFailedError,
    DeadlineError,
    EncodingRefusedError,
    HTTPStatusError,
    InsecureURLError,
    RedirectRefusedError,
    RequestBuildError,
    TLSError,
    TooLargeError,
    TransportError,
)
from secure_import.transport import forksafe
from secure_import.transport.base import FetchStats, Response
from secure_import.verify.names import parse_origin

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AuthHeader",
    "FetchStats",
    "Fetcher",
    "Response",
    "TransportOptions",
    "load_network_stack",
]

_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
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


def load_network_stack() -> None:
    """Import httpx now (idempotent): for callers that know they will need it
    and would rather pay for it outside an import."""
    _import_httpx()


def _import_httpx() -> ModuleType:
    """httpx, imported when the first client is made, not with this module.

    A warm process that runs from the verified cache never touches the network,
    and importing httpx (with httpcore and whatever optional back-ends it finds
    installed) costs ~100 ms and tens of thousands of objects that every later
    garbage collection walks.  httpx itself imports httpcore lazily, the first
    time a client is made.  Both are imported here under ``busy()``, whoever
    the caller is (the import hook, ``write_lock``, the CLI): the optional
    modules they probe for must never reach our finder, which would ask for
    the manifest again and so build a second client mid-import.
    """
    with busy():
        # The first connection encodes the host name with the idna codec
        # (getaddrinfo, SNI), which imports encodings.idna and stringprep:
        # load them now as well, not inside the first import.
        import encodings.idna  # noqa: F401

        import httpcore  # noqa: F401
        import httpx

    return httpx


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


class Fetcher:
    """One keep-alive HTTPS client for one repository origin: the default
    :class:`~secure_import.transport.base.Transport`."""

    def __init__(
        self,
        base_url: str,
        *,
        limits: Limits,
        ca_bundle: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: TransportOptions | None = None,
    ) -> None:
        """Raises:
        InsecureURLError: ``base_url`` is not an acceptable https URL.
        TLSError: the CA bundle cannot be loaded.
        ConfigError: bad client certificate, or ``truststore`` requested
            but not installed or combined with ``ca_bundle``.
        """
        built = time.perf_counter()
        self.origin, _ = parse_origin(base_url)
        self.base_url = base_url
        self.limits = limits
        self.stats = FetchStats()
        self.transport = transport or TransportOptions()
        self._auth = self.transport.auth
        self._clock = clock
        self._lock = threading.Lock()
        self._verify = _tls_context(ca_bundle, self.transport)
        self._httpx = _import_httpx()
        self._client = self._open_client()
        forksafe.register(self)
        self.stats.seconds = time.perf_counter() - built

    def _open_client(self) -> httpx.Client:
        lib, limits = self._httpx, self.limits
        client: httpx.Client = lib.Client(
            verify=self._verify,
            trust_env=False,
            follow_redirects=False,
            http2=False,
            timeout=lib.Timeout(
                limits.read_timeout, connect=limits.connect_timeout, pool=limits.read_timeout
            ),
            limits=lib.Limits(
                max_connections=limits.max_parallel,
                max_keepalive_connections=limits.max_parallel,
            ),
            headers={"Accept-Encoding": "identity", "User-Agent": "secure-import"},
        )
        return client

    def close(self) -> None:
        self._client.close()

    def after_fork_in_child(self) -> None:
        """In a forked child: a new client, and the copied one (whose pool
        holds the parent's live connections) dropped unclosed; see
        :mod:`secure_import.transport.forksafe`."""
        self._lock = threading.Lock()
        self._client = self._open_client()

    def url_for(self, relative_path: str) -> str:
        """The https URL of a repository-relative path (already checked safe)."""
        return urljoin(self.base_url, relative_path)

    def get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None = None,
        what: str = "file",
        waiting: Callable[[], None] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Response:
        """Download ``url`` fully, reading at most ``cap + 1`` bytes.

        ``waiting`` is called each time a request has been sent and its answer
        is awaited (httpcore's ``trace`` extension), for a caller that has
        other work to do meanwhile.  ``deadline`` (on this fetcher's clock,
        ``time.monotonic``) bounds the download besides its own deadline: the
        whole import's.  ``cancel``, once set, stops the download at its next
        read (another download of the same import failed).

        Raises:
            TransportError: and its subclasses; never an httpx exception.  The
                credential, if any, is scrubbed from every message.
        """
        start = time.perf_counter()
        try:
            return self._get(
                url,
                cap=cap,
                etag=etag,
                what=what,
                waiting=waiting,
                overall=deadline,
                cancel=cancel,
            )
        except (TransportError, RequestBuildError) as exc:
            if self._auth is not None:
                _scrub(exc, self._auth.value)
            raise
        finally:
            with self._lock:
                self.stats.seconds += time.perf_counter() - start

    def _get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None,
        what: str,
        waiting: Callable[[], None] | None,
        overall: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Response:
        if etag is not None and any(not (0x20 <= ord(ch) <= 0x7E) for ch in etag):
            # A validator that cannot go into a header (line breaks, control
            # characters, non-ASCII): no request can be built with it.
            raise RequestBuildError(
                f"the validator for the {what} cannot be sent in a header",
                check="request-header",
                url=url,
                got=repr(etag),
            )
        limits = self.limits
        deadline = self._clock() + limits.download_deadline
        which = "download"
        if overall is not None and overall < deadline:
            deadline, which = overall, "import"
        extensions: dict[str, object] = {}
        if waiting is not None:
            extensions["trace"] = _on_answer_awaited(waiting)
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_same_origin(current, original=url)
            self._check_time(deadline, which, current, what, cancel, size=None)
            # No single read may wait longer than the throughput window (a
            # silent server) or past the deadline.
            wait = max(
                0.001, min(limits.read_timeout, limits.throughput_window, deadline - self._clock())
            )
            headers = {"If-None-Match": etag} if etag else {}
            if self._auth is not None and parse_origin(current)[0] == self.origin:
                headers[self._auth.name] = self._auth.value
            try:
                with self._client.stream(
                    "GET",
                    current,
                    headers=headers,
                    extensions=extensions,
                    timeout=self._httpx.Timeout(wait, connect=min(limits.connect_timeout, wait)),
                ) as response:
                    with self._lock:
                        self.stats.requests += 1
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise HTTPStatusError(
                                f"redirect without a Location while fetching the {what}",
                                check="http-status",
                                url=current,
                                got=response.status_code,
                            )
                        current = urljoin(current, location)
                        continue
                    if response.status_code == 304 and etag is not None:
                        return Response(current, 304, None, etag)
                    if response.status_code != 200:
                        hint = ""
                        if response.status_code in (401, 403):
                            hint = (
                                " (check the repository credentials)"
                                if self._auth
                                else " (a private repository needs credentials)"
                            )
                        raise HTTPStatusError(
                            f"the server refused the {what}{hint}",
                            check="http-status",
                            url=current,
                            expected=200,
                            got=response.status_code,
                        )
                    encoding = response.headers.get("content-encoding", "identity").lower()
                    if encoding not in ("identity", ""):
                        raise EncodingRefusedError(
                            f"the {what} was sent compressed; compressed bodies are never "
                            "decoded (compression bombs)",
                            check="content-encoding",
                            url=current,
                            expected="identity",
                            got=encoding,
                        )
                    body = self._read_capped(
                        response,
                        cap=cap,
                        deadline=deadline,
                        which=which,
                        url=current,
                        what=what,
                        cancel=cancel,
                    )
                    return Response(current, 200, body, response.headers.get("etag"))
            except TransportError:
                raise
            except self._httpx.TimeoutException as exc:
                self._check_time(deadline, which, current, what, cancel, size=None)
                raise DeadlineError(
                    f"timed out fetching the {what}: {type(exc).__name__} (nothing arrived "
                    f"for {wait:g} s; the minimum throughput is {limits.min_throughput} "
                    f"bytes/s over {limits.throughput_window:g} s)",
                    check="throughput" if wait < limits.read_timeout else "timeout",
                    url=current,
                ) from exc
            except self._httpx.ConnectError as exc:
                raise _connect_error(exc, current, what) from exc
            except (
                self._httpx.LocalProtocolError,
                self._httpx.InvalidURL,
                self._httpx.UnsupportedProtocol,
                UnicodeError,
            ) as exc:
                # Our request, not the server, is at fault: an error of its
                # own, which no caller may take for "server unreachable".
                raise RequestBuildError(
                    f"the request for the {what} could not be built: {exc}",
                    check="request",
                    url=current,
                ) from exc
            except (self._httpx.HTTPError, OSError, ssl.SSLError) as exc:
                raise ConnectionFailedError(
                    f"the connection failed while fetching the {what}: {exc}",
                    check="connection",
                    url=current,
                ) from exc
        raise RedirectRefusedError(
            f"more than {_MAX_REDIRECTS} redirects", check="redirect-count", url=url
        )

    def _read_capped(
        self,
        response: httpx.Response,
        *,
        cap: int,
        deadline: float,
        which: str,
        url: str,
        what: str,
        cancel: threading.Event | None,
    ) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise TooLargeError(
                f"the server announced a {what} larger than allowed",
                check="size",
                url=url,
                expected=f"<= {cap} bytes",
                got=f"{declared} bytes",
            )
        chunks: list[bytes] = []
        size = 0
        limits = self.limits
        window_start = self._clock()
        window_bytes = 0
        # No chunk size: yield whatever arrives, so the deadline and the
        # throughput are checked after every read (a dripping server cannot
        # hide behind a buffering chunker).
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > cap:
                raise TooLargeError(
                    f"the {what} is larger than allowed",
                    check="size",
                    url=url,
                    expected=f"<= {cap} bytes",
                    got=f"> {cap} bytes (stopped reading)",
                )
            chunks.append(chunk)
            self._check_time(deadline, which, url, what, cancel, size=size)
            window_bytes += len(chunk)
            now = self._clock()
            elapsed = now - window_start
            if elapsed >= limits.throughput_window:
                if window_bytes < limits.min_throughput * elapsed:
                    raise DeadlineError(
                        f"the {what} arrived too slowly (a drip): "
                        f"{window_bytes} bytes in {elapsed:.1f} s",
                        check="throughput",
                        url=url,
                        expected=f">= {limits.min_throughput} bytes/s over "
                        f"{limits.throughput_window:g} s",
                        got=f"{window_bytes / elapsed:.0f} bytes/s ({size} bytes so far)",
                    )
                window_start, window_bytes = now, 0
        with self._lock:
            self.stats.bytes += size
        return b"".join(chunks)

    def _check_time(
        self,
        deadline: float,
        which: str,
        url: str,
        what: str,
        cancel: threading.Event | None,
        *,
        size: int | None,
    ) -> None:
        """Raise if the deadline (the download's or the import's) passed, or
        the import cancelled this download."""
        so_far = "" if size is None else f"{size} bytes so far"
        if cancel is not None and cancel.is_set():
            raise DeadlineError(
                f"the {what} was cancelled: another download of this import failed",
                check="cancelled",
                url=url,
                got=so_far or None,
            )
        if self._clock() > deadline:
            if which == "import":
                raise DeadlineError(
                    f"the import's total deadline passed while fetching the {what}",
                    check="import-deadline",
                    url=url,
                    expected=f"<= {self.limits.import_deadline:g} s for the whole import",
                    got=so_far or None,
                )
            raise DeadlineError(
                f"the {what} did not arrive within the download deadline",
                check="deadline",
                url=url,
                expected=f"<= {self.limits.download_deadline} s",
                got=so_far or None,
            )

    def _check_same_origin(self, url: str, *, original: str) -> None:
        try:
            origin, _ = parse_origin(url)
        except InsecureURLError as exc:
            if url == original:
                raise
            raise RedirectRefusedError(
                "redirect to a non-https or malformed URL refused",
                check="redirect-origin",
                url=original,
                expected=str(self.origin),
                got=_strip(url),
            ) from exc
        if origin != self.origin:
            raise RedirectRefusedError(
                "request off the configured origin refused",
                check="redirect-origin",
                url=original,
                expected=str(self.origin),
                got=str(origin),
            )


def _on_answer_awaited(
    waiting: Callable[[], None],
) -> Callable[[str, dict[str, object]], None]:
    """An httpcore trace callback calling ``waiting`` once the request has been
    sent in full and the response headers are awaited."""

    def trace(event: str, info: dict[str, object]) -> None:
        if event.endswith("receive_response_headers.started"):
            waiting()

    return trace


def _tls_context(
    ca_bundle: str | Path | None, transport: TransportOptions
) -> ssl.SSLContext | bool:
    """The verifying TLS context for one repository (never an unverified one)."""
    if transport.use_truststore:
        if ca_bundle is not None:
            raise ConfigError(
                "use either a CA bundle or the system trust store, not both",
                check="truststore",
                got=str(ca_bundle),
            )
        try:
            truststore = importlib.import_module("truststore")  # optional dependency
        except ImportError as exc:
            raise ConfigError(
                "the system trust store was requested but the 'truststore' package is not "
                "installed (pip install truststore)",
                check="truststore",
            ) from exc
        ctx: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    elif ca_bundle is not None:
        try:
            ctx = ssl.create_default_context(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(
                f"cannot load the CA bundle: {exc}", check="ca-bundle", got=str(ca_bundle)
            ) from exc
    elif transport.client_cert is None:
        return True  # httpx's default: certifi's bundle, fully verified
    else:
        ctx = _import_httpx().create_ssl_context(verify=True, trust_env=False)
    if transport.client_cert is not None:
        try:
            ctx.load_cert_chain(
                str(transport.client_cert),
                None if transport.client_key is None else str(transport.client_key),
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {transport.client_cert}"
                + ("" if transport.client_key is None else f" / key {transport.client_key}")
                + f": {getattr(exc, 'strerror', None) or exc}",
                check="client-cert",
                got=str(transport.client_cert),
            ) from exc
    elif transport.client_key is not None:
        raise ConfigError(
            "a client key was given without a client certificate",
            check="client-cert",
            got=str(transport.client_key),
        )
    return ctx


def _scrub(exc: BaseException, secret: str) -> None:
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


def _strip(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _connect_error(exc: httpx.ConnectError, url: str, what: str) -> TransportError:
    text = str(exc)
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper() or "TLS" in text.upper():
        return TLSError(
            f"TLS verification failed while fetching the {what}: {text}",
            check="tls",
            url=url,
        )
    return ConnectionFailedError(
        f"could not connect while fetching the {what}: {text}", check="connect", url=url
    )
