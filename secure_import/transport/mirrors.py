"""A repository served from its origin and a list of mirrors: one transport, failover by policy.

Signed content does not depend on where it is served from, so a mirror is
untrusted transport, exactly like the origin: every byte either serves is
verified by the caller against the same pinned keys, high-water mark, expiry
and caps.  What this module adds is *where* to ask, and when to ask the next
source (Go's ``GOPROXY`` list semantics, per repository):

- the sources are the repository's URL, then its mirrors, in the order
  given; a request for ``<url>path`` is made to ``<source>path``; a request
  outside the repository's URL is refused before any source is asked;
- ``fallback = "on-not-found"``: only a 404 or 410 from one source sends the
  request to the next (a mirror holds what the origin no longer or not yet
  holds); any other failure is the answer;
- ``fallback = "on-error"`` (the default, see ``docs/operations.md``): any
  transport failure (connection, TLS, timeout, throughput, any HTTP status,
  a refused redirect, a refused encoding) sends it on;
- never a reason to ask the next source: a request that cannot be built (a
  local fault), a body longer than its cap (the caller refuses it as a
  length mismatch: a source serving the wrong bytes is refused like
  tampering, never silently replaced), the import's own deadline or
  cancellation, and every trust failure (hash, signature, rollback), which
  the caller raises after this transport has returned;
- each source is its own HTTPS client bound to its own origin, so a
  redirect may stay on that source's origin only, over https only;
- the credential header and the client certificate go to the origin only: a
  mirror never learns the repository's secrets or the client's identity;
- a source that could not be reached is asked last for the next
  ``DOWN_FOR`` seconds (it is still asked when every other source fails), so
  a dead origin does not cost a connect timeout per file;
- under ``on-error``, a source that is not the last one asked gets at most
  ``failover_after`` seconds (``Limits.failover_after``) for any single wait
  (connect, TLS handshake, a read): a silent origin is given up after that,
  not after the full read bound;
- when every source tried failed: a resource every answering source said is
  missing (404/410) is an :class:`~secure_import.errors.HTTPStatusError`
  with that status (callers treat it as missing: per-file fallback, end of a
  rotation walk, fail closed); otherwise one
  :class:`~secure_import.errors.AllSourcesFailedError` listing each attempt
  (URL and what happened); a single attempt's error is raised unchanged.

The :class:`~secure_import.transport.base.Response` carries the URL that
actually served the body: the repository audits the host that served each
manifest and file, and names a mirror that served stale data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from secure_import.errors import (
    AllSourcesFailedError,
    ConfigError,
    ConnectionFailedError,
    DeadlineError,
    HTTPStatusError,
    RedirectRefusedError,
    TLSError,
    TooLargeError,
    TransportError,
)
from secure_import.transport.base import FetchStats, Response
from secure_import.transport.mirrorpolicy import (
    DEFAULT_FALLBACK,
    FALLBACKS,
    MAX_MIRRORS,
    check_mirrors,
    served_host,
)

__all__ = [
    "DEFAULT_FALLBACK",
    "DOWN_FOR",
    "FALLBACKS",
    "MAX_MIRRORS",
    "MirrorSet",
    "SourceClient",
    "check_mirrors",
    "served_host",
]

#: Seconds a source that could not be reached is asked last.
DOWN_FOR = 30.0
_NOT_FOUND = (404, 410)
#: Deadline checks that end the whole request, not just one source's attempt.
_FINAL_CHECKS = frozenset({"import-deadline", "cancelled"})


class SourceClient(Protocol):
    """What the mirror set needs from each source's client (the HTTPS
    :class:`~secure_import.transport.https.Fetcher` has it)."""

    @property
    def stats(self) -> FetchStats: ...

    def get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None = ...,
        what: str = ...,
        waiting: Callable[[], None] | None = ...,
        deadline: float | None = ...,
        cancel: threading.Event | None = ...,
        patience: float | None = ...,
    ) -> Response: ...

    def close(self) -> None: ...


def _unreachable(exc: TransportError) -> bool:
    """The source could not be reached at all (not: it answered with an error)."""
    if isinstance(exc, DeadlineError):
        return exc.check not in _FINAL_CHECKS
    return isinstance(exc, ConnectionFailedError | TLSError)


def _short(exc: TransportError) -> str:
    """What happened, briefly: code, check and the status or value got."""
    got = "" if exc.got is None else f" {exc.got}"
    check = "" if exc.check is None else f" ({exc.check})"
    return f"{exc.code}{got}{check}"


class MirrorSet:
    """One repository's :class:`~secure_import.transport.base.Transport` over its
    origin and mirrors (see the module docstring for the rules)."""

    def __init__(
        self,
        base_url: str,
        sources: Sequence[tuple[str, SourceClient]],
        *,
        fallback: str = DEFAULT_FALLBACK,
        clock: Callable[[], float] = time.monotonic,
        failover_after: float | None = None,
    ) -> None:
        """``sources``: ``(base URL, client)`` pairs, the origin first (its
        base URL is ``base_url``), then each mirror; each client is bound to
        its own base URL's origin.  ``failover_after``: under ``on-error``,
        the longest single wait on a source that is not the last one asked
        (``Limits.failover_after``)."""
        if fallback not in FALLBACKS:
            raise ConfigError("unknown fallback policy", check="fallback", got=repr(fallback))
        if not sources or sources[0][0] != base_url:
            raise ConfigError("the origin is the first source", check="mirrors", url=base_url)
        self.base_url = base_url
        self.fallback = fallback
        self._sources = list(sources)
        self._clock = clock
        self.failover_after = failover_after if fallback == "on-error" else None
        self._lock = threading.Lock()
        #: Source index -> when it last could not be reached.
        self._down: dict[int, float] = {}

    @property
    def stats(self) -> FetchStats:
        """The sum over every source's client."""
        total = FetchStats()
        for _, client in self._sources:
            total.requests += client.stats.requests
            total.bytes += client.stats.bytes
            total.seconds += client.stats.seconds
        return total

    @property
    def source_urls(self) -> tuple[str, ...]:
        return tuple(base for base, _ in self._sources)

    def close(self) -> None:
        for _, client in self._sources:
            client.close()

    def _order(self) -> list[int]:
        """Sources in configured order, those recently unreachable last."""
        now = self._clock()
        with self._lock:
            down = {i for i, when in self._down.items() if now - when < DOWN_FOR}
        indices = range(len(self._sources))
        return [i for i in indices if i not in down] + [i for i in indices if i in down]

    def _fails_over(self, exc: TransportError) -> bool:
        if isinstance(exc, TooLargeError):
            return False  # the wrong bytes: refused by the caller, never replaced
        if isinstance(exc, DeadlineError) and exc.check in _FINAL_CHECKS:
            return False
        if isinstance(exc, HTTPStatusError) and exc.got in _NOT_FOUND:
            return True
        return self.fallback == "on-error"

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
        """Fetch ``url`` (under the repository's URL) from the first source
        that serves it, by the failover policy.

        Raises:
            RedirectRefusedError: ``url`` is not under the repository's URL.
            TransportError: as the module docstring says.
            RequestBuildError: the request cannot be built (never failed over).
        """
        if not url.startswith(self.base_url):
            raise RedirectRefusedError(
                "request outside the repository's URL refused",
                check="mirror-path",
                url=url,
                expected=self.base_url,
            )
        relative = url[len(self.base_url) :]
        called = False

        def once() -> None:
            nonlocal called
            if not called and waiting is not None:
                called = True
                waiting()

        attempts: list[tuple[str, TransportError]] = []
        order = self._order()
        for position, index in enumerate(order):
            base, client = self._sources[index]
            target = base + relative
            try:
                extra: dict[str, object] = {}
                if deadline is not None:
                    extra["deadline"] = deadline
                if cancel is not None:
                    extra["cancel"] = cancel
                if self.failover_after is not None and position < len(order) - 1:
                    # Another source can be asked: a silent one is given up
                    # sooner (the last source keeps the full bounds).
                    extra["patience"] = self.failover_after
                response = client.get(
                    target,
                    cap=cap,
                    etag=etag,
                    what=what,
                    waiting=once if waiting is not None else None,
                    **extra,  # type: ignore[arg-type]
                )
            except TransportError as exc:
                attempts.append((target, exc))
                if _unreachable(exc):
                    with self._lock:
                        self._down[index] = self._clock()
                if not self._fails_over(exc):
                    break
                continue
            with self._lock:
                self._down.pop(index, None)
            return response
        raise self._failure(url, what, attempts)

    def _failure(
        self, url: str, what: str, attempts: list[tuple[str, TransportError]]
    ) -> TransportError:
        if len(attempts) == 1:
            return attempts[0][1]
        answered = [e for _, e in attempts if isinstance(e, HTTPStatusError)]
        listed = tuple((target, _short(exc)) for target, exc in attempts)
        if answered and all(e.got in _NOT_FOUND for e in answered):
            status = answered[0].got
            tried = "; ".join(f"{n}. {at}: {why}" for n, (at, why) in enumerate(listed, 1))
            return HTTPStatusError(
                f"no source has the {what} ({tried})",
                check="http-status",
                url=url,
                expected=200,
                got=status,
            )
        return AllSourcesFailedError(
            f"no source served the {what} (fallback {self.fallback})",
            check="mirrors",
            url=url,
            attempts=listed,
        )
