"""A forked child never talks over its parent's connections.

``os.fork`` (the ``fork`` start method of :mod:`multiprocessing`, or a
library forking by itself) copies the parent's HTTP client together with the
open keep-alive TLS connections in its pool.  Both processes then hold the
same socket and the same TLS state: a request the child writes on it uses
the sequence numbers the parent will use next, so the server rejects the
parent's next record (``bad record mac``), or one process reads the answer
meant for the other.  A lock held by another parent thread at fork time
would also stay held in the child forever.

Transports register here; after a fork, in the child only, each is told to
drop what it copied and start afresh.  The copied connections are not closed
politely: a TLS close alert or a ``shutdown`` would end the parent's
connection too.  Dropping the last reference closes only the child's copy of
the descriptor, which leaves the parent's connection as it was.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol


class ForkAware(Protocol):
    """What a registered transport provides."""

    def after_fork_in_child(self) -> None:
        """Forget the copied connections and locks; connect afresh on next use.

        Runs in the child right after ``fork``, with only the forking thread
        alive: it must not wait for a lock, close a connection politely or
        start a thread."""


#: Every live transport (weakly held: a registered transport is not kept alive).
_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_registered = False
_register_lock = threading.Lock()


def register(transport: ForkAware) -> None:
    """Have ``transport.after_fork_in_child()`` called in every forked child."""
    global _registered
    with _register_lock:
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _registered = True
        _LIVE.add(transport)


def _after_fork_in_child() -> None:
    global _register_lock
    # Another parent thread may have been registering at fork time.
    _register_lock = threading.Lock()
    for transport in list(_LIVE):
        transport.after_fork_in_child()
