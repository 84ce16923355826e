"""The only module that talks to the network.

Policy, in order of the attack catalogue (THREATS T1-T10):

- https only; redirects are followed by hand and only within the configured
  origin (same scheme, host and port) and only a few times;
- TLS is always verified, against certifi's bundle (httpx's default), or,
  when the user names a ``ca_bundle``, against that bundle alone, or, when
  asked, against the operating system's trust store (the optional
  ``truststore`` package);
- private repositories: an authentication header
  (:class:`~secure_import.transport.options.AuthHeader`) is
  attached per request, and only when the request's origin is exactly the
  configured one (redirects off the origin are refused anyway); its value is
  never put in an error message, a ``repr`` or the audit log (messages built
  here are scrubbed of it); a client certificate (mutual TLS) is loaded into
  the verifying TLS context;
- the environment is ignored (``trust_env=False``): ``HTTPS_PROXY``,
  ``SSL_CERT_FILE`` and ``.netrc`` cannot silently redirect or re-root trust;
- bodies are streamed and capped: the read stops at ``cap + 1`` bytes
  (:mod:`secure_import.transport.reading`, shared with object storage);
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
import ssl
import threading
import time
from collections.abc import Callable
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
    TransportError,
)
from secure_import.transport import forksafe
from secure_import.transport.base import FetchStats, Response
from secure_import.transport.options import AuthHeader, TransportOptions, scrub_secret
from secure_import.transport.reading import Deadline, read_capped, refuse_announced
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
        patience: float | None = None,
    ) -> Response:
        """Download ``url`` fully, reading at most ``cap + 1`` bytes.

        ``waiting`` is called each time a request has been sent and its answer
        is awaited (httpcore's ``trace`` extension), for a caller that has
        other work to do meanwhile.  ``deadline`` (on this fetcher's clock,
        ``time.monotonic``) bounds the download besides its own deadline: the
        whole import's.  ``cancel``, once set, stops the download at its next
        read (another download of the same import failed).  ``patience``
        caps every single wait (connect, handshake, read) below the usual
        bounds: a mirror set gives up on a silent source sooner when another
        source can be asked.

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
                patience=patience,
            )
        except (TransportError, RequestBuildError) as exc:
            if self._auth is not None:
                scrub_secret(exc, self._auth.value)
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
        patience: float | None = None,
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
        deadline = Deadline.start(limits, self._clock, overall=overall, cancel=cancel)
        extensions: dict[str, object] = {}
        if waiting is not None:
            extensions["trace"] = _on_answer_awaited(waiting)
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_same_origin(current, original=url)
            deadline.check(current, what)
            # No single read may wait longer than the throughput window (a
            # silent server) or past the deadline.
            wait = max(
                0.001, min(limits.read_timeout, limits.throughput_window, deadline.remaining())
            )
            if patience is not None:
                wait = max(0.001, min(wait, patience))
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
                    declared = response.headers.get("content-length")
                    refuse_announced(
                        int(declared) if declared is not None and declared.isdigit() else None,
                        cap=cap,
                        url=current,
                        what=what,
                        by="the server announced",
                    )
                    # iter_raw() without a chunk size yields whatever arrives.
                    body = read_capped(
                        response.iter_raw(), cap=cap, url=current, what=what, deadline=deadline
                    )
                    with self._lock:
                        self.stats.bytes += len(body)
                    return Response(current, 200, body, response.headers.get("etag"))
            except TransportError:
                raise
            except self._httpx.TimeoutException as exc:
                deadline.check(current, what)
                if patience is not None and wait >= patience:
                    raise DeadlineError(
                        f"gave up on this source for the {what}: nothing arrived for "
                        f"{wait:g} s (failover_after; another source is asked next)",
                        check="failover-after",
                        url=current,
                    ) from exc
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
