"""The only module that talks to the network.

Policy, in order of the attack catalogue (THREATS T1-T10):

- https only; redirects are followed by hand and only within the configured
  origin (same scheme, host and port) and only a few times;
- TLS is always verified, against the system's default bundle or, when the
  user names a ``ca_bundle``, against that bundle alone;
- the environment is ignored (``trust_env=False``): ``HTTPS_PROXY``,
  ``SSL_CERT_FILE`` and ``.netrc`` cannot silently redirect or re-root trust;
- bodies are streamed and capped: the read stops at ``cap + 1`` bytes;
- we ask for ``identity`` and refuse any content encoding, so a compression
  bomb is never expanded;
- every download has a total deadline besides the per-read timeout, so a server
  dripping one byte at a time cannot hold an import for ever.

Nothing here decides trust: callers verify every byte this module returns.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

# httpx imports httpcore (and its optional back-ends) lazily, the first time a
# client is made.  That would happen inside our import hook; import it now.
import httpcore  # noqa: F401
import httpx

from .config import Limits, Origin, parse_origin
from .errors import (
    ConnectionFailedError,
    DeadlineError,
    EncodingRefusedError,
    HTTPStatusError,
    InsecureURLError,
    RedirectRefusedError,
    TLSError,
    TooLargeError,
    TransportError,
)

__all__ = ["FetchStats", "Fetcher", "Response"]

_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Response:
    """A fully read body (``None`` for 304 Not Modified) and its ETag."""

    url: str
    status: int
    body: bytes | None
    etag: str | None


@dataclass
class FetchStats:
    """Counters for the benchmark and tests: what did this repository cost?"""

    requests: int = 0
    bytes: int = 0


class Fetcher:
    """One keep-alive HTTPS client for one repository origin."""

    def __init__(
        self,
        base_url: str,
        *,
        limits: Limits,
        ca_bundle: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin, _ = parse_origin(base_url)
        self.base_url = base_url
        self.limits = limits
        self.stats = FetchStats()
        self._clock = clock
        self._lock = threading.Lock()
        verify: ssl.SSLContext | bool
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise TLSError(
                    f"cannot load the CA bundle: {exc}", check="ca-bundle", got=str(ca_bundle)
                ) from exc
        else:
            verify = True
        self._client = httpx.Client(
            verify=verify,
            trust_env=False,
            follow_redirects=False,
            http2=False,
            timeout=httpx.Timeout(
                limits.read_timeout, connect=limits.connect_timeout, pool=limits.read_timeout
            ),
            limits=httpx.Limits(
                max_connections=limits.max_parallel,
                max_keepalive_connections=limits.max_parallel,
            ),
            headers={"Accept-Encoding": "identity", "User-Agent": "secure-import"},
        )

    def close(self) -> None:
        self._client.close()

    def url_for(self, relative_path: str) -> str:
        """The https URL of a repository-relative path (already checked safe)."""
        return urljoin(self.base_url, relative_path)

    def get(
        self, url: str, *, cap: int, etag: str | None = None, what: str = "file"
    ) -> Response:
        """Download ``url`` fully, reading at most ``cap + 1`` bytes.

        Raises:
            TransportError: and its subclasses; never an httpx exception.
        """
        deadline = self._clock() + self.limits.download_deadline
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_same_origin(current, original=url)
            headers = {"If-None-Match": etag} if etag else {}
            try:
                with self._client.stream("GET", current, headers=headers) as response:
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
                        raise HTTPStatusError(
                            f"the server refused the {what}",
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
                    body = self._read_capped(response, cap=cap, deadline=deadline, url=current,
                                             what=what)
                    return Response(current, 200, body, response.headers.get("etag"))
            except TransportError:
                raise
            except httpx.TimeoutException as exc:
                raise DeadlineError(
                    f"timed out fetching the {what}: {type(exc).__name__}",
                    check="timeout",
                    url=current,
                ) from exc
            except httpx.ConnectError as exc:
                raise _connect_error(exc, current, what) from exc
            except (httpx.HTTPError, httpx.InvalidURL, OSError, ssl.SSLError) as exc:
                raise ConnectionFailedError(
                    f"the connection failed while fetching the {what}: {exc}",
                    check="connection",
                    url=current,
                ) from exc
        raise RedirectRefusedError(
            f"more than {_MAX_REDIRECTS} redirects", check="redirect-count", url=url
        )

    def _read_capped(
        self, response: httpx.Response, *, cap: int, deadline: float, url: str, what: str
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
        for chunk in response.iter_raw(_CHUNK):
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
            if self._clock() > deadline:
                raise DeadlineError(
                    f"the {what} did not arrive within the download deadline",
                    check="deadline",
                    url=url,
                    expected=f"<= {self.limits.download_deadline} s",
                    got=f"{size} bytes so far",
                )
        with self._lock:
            self.stats.bytes += size
        return b"".join(chunks)

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
