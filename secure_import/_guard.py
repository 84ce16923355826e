"""A per-thread marker for "secure_import is doing its own work in this thread".

While the finder fetches or verifies, the libraries it uses (httpx, httpcore,
ssl, encodings) may import optional modules lazily.  Those imports reach the
end of ``sys.meta_path`` — our finder — and must not re-enter it: that would
recurse into the very fetch in progress, or deadlock on the repository lock.
No remote code runs during our own work, so declining every name while the
marker is set only ever turns such an optional import into the
``ModuleNotFoundError`` it would have been without us.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["InBackground", "busy", "is_busy"]

_T = TypeVar("_T")

_state = threading.local()


def is_busy() -> bool:
    return bool(getattr(_state, "depth", 0))


class _Busy:
    """The marker as a plain context manager: entered several times for every
    module imported, so it avoids the generator machinery of ``contextmanager``."""

    __slots__ = ()

    def __enter__(self) -> None:
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _state.depth -= 1


_BUSY = _Busy()


def busy() -> _Busy:
    """``with busy():`` marks this thread as inside secure_import (re-entrant)."""
    return _BUSY


class InBackground(Generic[_T]):
    """``call(ready)`` running in a worker thread marked busy, started at once.

    For a wait the caller can fill with work of its own (the manifest request
    while the cached copy is prepared).  The call invokes ``ready()`` when it
    starts waiting on something outside the interpreter (the server's answer);
    :meth:`wait_ready` lets the caller start its own work only then, since
    both threads competing for the interpreter lock would just delay the
    request.  :meth:`result` joins the thread and returns the value or raises
    what the call raised, in the caller's thread.  With ``background=False``
    the call runs in :meth:`result`, in the caller's thread: no thread for a
    wait nothing will fill.
    """

    __slots__ = ("_call", "_error", "_ready", "_thread", "_value")

    def __init__(
        self, call: Callable[[Callable[[], None]], _T], *, background: bool = True
    ) -> None:
        self._call = call
        self._value: _T | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            thread = threading.Thread(target=self._run, name="secure-import-request", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                return  # no thread to be had (interpreter shutting down, limits): run in result()
            self._thread = thread

    def _run(self) -> None:
        with _BUSY:
            try:
                self._value = self._call(self._ready.set)
            except BaseException as exc:  # noqa: BLE001 - re-raised by result(), in the caller's thread
                self._error = exc
            finally:
                self._ready.set()

    def wait_ready(self) -> None:
        """Return once the call is waiting outside the interpreter, or has ended."""
        if self._thread is not None:
            self._ready.wait()

    def result(self) -> _T:
        if self._thread is None:
            return self._call(_nothing)
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._value  # type: ignore[return-value]


def _nothing() -> None:
    pass
