"""Reading a response body within bounds: the size cap, the deadlines, the throughput.

Shared by every transport (the HTTPS client and the object-store client), so a
body is bounded the same way whoever delivers it (THREATS T4, T9):

- a size announced beforehand (``Content-Length``, an object's stored size)
  above the cap is refused before the body is read;
- the read stops at ``cap + 1`` bytes: nothing longer is ever held in memory;
- after every chunk, the download's deadline (or the whole import's, when it
  is earlier) and a cancel event are checked;
- a minimum throughput (``Limits.min_throughput`` bytes per second over every
  ``Limits.throughput_window`` seconds) cuts a dripping server off within
  seconds.

Nothing here decides trust: the caller verifies the bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from secure_import.config import Limits
from secure_import.errors import DeadlineError, TooLargeError

__all__ = ["Deadline", "read_capped", "refuse_announced"]


@dataclass(frozen=True)
class Deadline:
    """When one download must be over, and why (its own limit or the import's)."""

    at: float
    #: ``"download"`` (``Limits.download_deadline``) or ``"import"`` (the
    #: whole import's deadline, earlier than the download's).
    which: str
    limits: Limits
    clock: Callable[[], float]
    cancel: threading.Event | None = None

    @classmethod
    def start(
        cls,
        limits: Limits,
        clock: Callable[[], float],
        *,
        overall: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Deadline:
        """The deadline of a download starting now, bounded by ``overall``."""
        at = clock() + limits.download_deadline
        if overall is not None and overall < at:
            return cls(overall, "import", limits, clock, cancel)
        return cls(at, "download", limits, clock, cancel)

    def remaining(self) -> float:
        return self.at - self.clock()

    def check(self, url: str, what: str, *, size: int | None = None) -> None:
        """Raise if the deadline passed or the import cancelled this download.

        Raises:
            DeadlineError: ``cancelled``, ``import-deadline`` or ``deadline``.
        """
        so_far = None if size is None else f"{size} bytes so far"
        if self.cancel is not None and self.cancel.is_set():
            raise DeadlineError(
                f"the {what} was cancelled: another download of this import failed",
                check="cancelled",
                url=url,
                got=so_far,
            )
        if self.clock() > self.at:
            if self.which == "import":
                raise DeadlineError(
                    f"the import's total deadline passed while fetching the {what}",
                    check="import-deadline",
                    url=url,
                    expected=f"<= {self.limits.import_deadline:g} s for the whole import",
                    got=so_far,
                )
            raise DeadlineError(
                f"the {what} did not arrive within the download deadline",
                check="deadline",
                url=url,
                expected=f"<= {self.limits.download_deadline} s",
                got=so_far,
            )


def refuse_announced(size: int | None, *, cap: int, url: str, what: str, by: str) -> None:
    """Refuse a body whose announced size (``by``: who announced it) exceeds ``cap``.

    Raises:
        TooLargeError: ``size`` is above ``cap``.
    """
    if size is not None and size > cap:
        raise TooLargeError(
            f"{by} a {what} larger than allowed",
            check="size",
            url=url,
            expected=f"<= {cap} bytes",
            got=f"{size} bytes",
        )


def read_capped(
    chunks: Iterable[bytes], *, cap: int, url: str, what: str, deadline: Deadline
) -> bytes:
    """The whole body from ``chunks``, read within the bounds of the module docstring.

    ``chunks`` should yield whatever arrives (no fixed chunk size), so that
    the checks run after every read: a dripping server cannot hide behind a
    buffering chunker.

    Raises:
        TooLargeError: more than ``cap`` bytes (reading stopped there).
        DeadlineError: a deadline passed, the download was cancelled, or the
            body arrived too slowly (``throughput``).
    """
    limits = deadline.limits
    clock = deadline.clock
    parts: list[bytes] = []
    size = 0
    window_start = clock()
    window_bytes = 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise TooLargeError(
                f"the {what} is larger than allowed",
                check="size",
                url=url,
                expected=f"<= {cap} bytes",
                got=f"> {cap} bytes (stopped reading)",
            )
        parts.append(bytes(chunk))
        deadline.check(url, what, size=size)
        window_bytes += len(chunk)
        now = clock()
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
    return b"".join(parts)
