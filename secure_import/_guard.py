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
from types import TracebackType

__all__ = ["busy", "is_busy"]


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
