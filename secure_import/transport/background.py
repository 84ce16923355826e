"""Run one request in a worker thread while the importing thread prepares
what it can; the worker is marked busy so our finder is never re-entered."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from secure_import._guard import _BUSY

_T = TypeVar("_T")


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
