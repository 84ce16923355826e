"""What a repository needs from a transport: the seam between trust and the network.

:class:`~secure_import.repository.Repository` talks to its server only through
:class:`Transport`.  The HTTPS client (:class:`secure_import.transport.https.Fetcher`)
is the default; a mirror list, an object store or a test double plugs in here
without touching the trust code, because nothing a transport returns is
trusted: every byte is verified by the caller against the signed manifest.

The contract a transport keeps (the repository relies on each point):

- :meth:`Transport.get` returns the whole body of a 200 answer, or a
  :class:`Response` with status 304 and no body when ``etag`` was given and
  the server says the copy is current; any other outcome is an exception;
- it reads at most ``cap + 1`` bytes and raises
  :class:`~secure_import.errors.TooLargeError` when the body is longer than
  ``cap`` (the repository turns this into a length mismatch);
- a missing resource is :class:`~secure_import.errors.HTTPStatusError` with
  ``got=404`` (a missing next root ends a rotation walk; a missing bundle means
  "fetch file by file"); every failure is a
  :class:`~secure_import.errors.TransportError`, never a library's own
  exception, and never carries a credential; the one exception is a request
  that cannot even be built from local inputs (a header value, a URL):
  :class:`~secure_import.errors.RequestBuildError`, which is not a transport
  failure, so no caller takes it for "server unreachable" (THREATS H5);
- ``waiting``, when given, is called once the request is out and its answer
  is awaited, so the caller can work meanwhile (called at most once per
  request, from the thread that runs :meth:`Transport.get`);
- ``deadline`` (on ``time.monotonic``'s clock), when given, is the whole
  import's: the download stops with
  :class:`~secure_import.errors.DeadlineError` (``check="import-deadline"``)
  once it passes, besides the download's own deadline; ``cancel``, once set,
  stops it at its next read with ``check="cancelled"`` (another download of
  the same import failed), and no request is started after it is set
  (THREATS T9);
- it is safe to call from several threads at once (packages are fetched
  concurrently) and :attr:`Transport.stats` counts what was spent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FetchStats", "Response", "Transport"]


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
    #: Wall time spent building the client (TLS context) and inside
    #: :meth:`Transport.get` (connections, round trips, bodies): the network's
    #: share of an import, which a local import does not pay.
    seconds: float = 0.0


class Transport(Protocol):
    """The requests a repository makes: see the module docstring for the contract."""

    @property
    def stats(self) -> FetchStats:
        """Requests made, bytes read and seconds spent so far."""
        ...

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

        ``what`` names the resource in error messages; ``deadline`` and
        ``cancel``: see the module docstring.

        Raises:
            TransportError: and its subclasses only (HTTPStatusError with the
                status as ``got``; TooLargeError past ``cap``).
        """
        ...

    def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...
