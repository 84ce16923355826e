"""Concurrent downloads for one import, where the first failure ends them all.

A cold package that has no bundle is fetched file by file, several at once.
Waiting for every worker after one download has already failed would let a
hostile server hold the import for as long as its slowest drip lasts (THREATS
T9), so :func:`fetch_all`:

- gives every download the same ``cancel`` event, set by the first failure:
  a transport honouring it starts no request once it is set, and stops a
  download in flight at its next read
  (:class:`~secure_import.transport.base.Transport`);
- raises that first failure as soon as it happens, without joining the workers
  still reading (they end at their next read; what they return is dropped);
- never reports a cancellation it caused instead of the failure behind it.

Nothing here verifies or trusts anything: ``fetch`` does (and caches only
verified bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from secure_import._guard import busy

__all__ = ["fetch_all"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def fetch_all(
    items: Sequence[_T], fetch: Callable[[_T, threading.Event], _R], *, max_parallel: int
) -> list[_R]:
    """``[fetch(item, cancel) for item in items]``, up to ``max_parallel`` at once.

    Raises:
        BaseException: the first failure of ``fetch`` (not a cancellation it
            caused), at once; the other calls are cancelled.
    """
    cancel = threading.Event()

    def one(item: _T) -> _R:
        with busy():  # worker threads are ours too: no re-entry from lazy imports
            try:
                return fetch(item, cancel)
            except BaseException:
                cancel.set()
                raise

    if len(items) == 1 or max_parallel <= 1:
        return [one(item) for item in items]
    pool = ThreadPoolExecutor(
        max_workers=min(max_parallel, len(items)), thread_name_prefix="secure-import-fetch"
    )
    futures: list[Future[_R]] = []
    try:
        futures = [pool.submit(one, item) for item in items]
        pending: set[Future[_R]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if any(future.exception() is not None for future in done):
                raise _first_failure(futures)
        return [future.result() for future in futures]
    finally:
        cancel.set()  # a no-op on success: every call is over
        pool.shutdown(wait=False, cancel_futures=True)


def _first_failure(futures: Sequence[Future[_R]]) -> BaseException:
    """The failure that ended the fetch: the first that is not a cancellation
    it caused (those only echo it)."""
    failures = [
        exc
        for future in futures
        if future.done() and not future.cancelled() and (exc := future.exception()) is not None
    ]
    for exc in failures:
        if getattr(exc, "check", None) != "cancelled":
            return exc
    return failures[0]
