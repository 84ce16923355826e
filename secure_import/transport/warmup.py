"""Import the network stack in a background thread, once per process.

A repository that checks freshness (the default) makes its first request
inside the first import from it, and that request needs :mod:`httpx` (with
httpcore, ssl and whatever optional back-ends are installed): tens of
milliseconds of imports.  :func:`start` begins them in a daemon thread as soon
as such a repository is added, so they overlap with whatever the application
does before its first remote import; the request later imports the same
modules and simply finds them loaded (or waits on importlib's per-module lock
for the one still in progress).

What keeps it safe:

- the thread is marked busy (:mod:`secure_import._guard`) for its whole life,
  so every import it makes, including the optional modules httpx probes for,
  is declined by our finder: it loads local modules only, exactly those the
  request would load in the importing thread, and never a remote byte;
- it touches no repository, cache, state or audit log: it imports code and
  nothing else, so nothing it does can be trusted, cached or run as remote code;
- it never raises and never blocks the interpreter's exit (a daemon thread);
  ``os.fork`` waits for it (:func:`_before_fork`), so no child inherits an
  import lock held by a thread it does not have;
  a failure (httpx missing, no thread to be had) is left to the request,
  which imports the same modules in its own thread and reports it as before;
- a repository waits for it with :func:`wait` before its manifest update
  (:meth:`~secure_import.repository.Repository.trusted_manifest`, the first
  thing the finder asks), never by importing the same modules concurrently.
  CPython calls every meta-path finder with the global import lock held, and
  an import in the warm-up thread needs that lock at every step: waiting for
  the thread, or for a module it is half-way through (``typing``,
  ``dataclasses``... which the update's own lazy imports share), while holding
  the lock would never end.  :func:`wait` lets go of the global import lock
  this thread holds (all its levels) while it joins the warm-up thread, and
  takes it back, as many levels, before it returns.  Nothing else changes
  hands: the module locks of the imports in progress in this thread stay
  held, and the warm-up thread imports only the transport module and the
  network stack, never a module the import in progress holds.
"""

from __future__ import annotations

import _imp
import os
import threading

from secure_import._guard import busy

__all__ = ["start", "wait"]

#: How long a request waits for the warm-up before giving up on it.
WAIT_SECONDS = 120.0

_thread: threading.Thread | None = None
_started = False
_start_lock = threading.Lock()
_fork_hooked = False


def _load() -> None:
    with busy():
        try:
            from secure_import.transport.https import load_network_stack

            load_network_stack()
        except BaseException:  # noqa: BLE001, S110 - the request imports it again and reports
            pass


def _before_fork() -> None:
    """A process forked while the warm-up thread is half-way through an import
    would inherit that module's import lock held by a thread that does not
    exist in the child: its first request (``import httpx``) would wait
    forever.  ``os.fork`` (multiprocessing's fork and forkserver start
    methods) therefore waits for the warm-up to end first."""
    wait()


def start() -> bool:
    """Start importing the network stack in the background (once per
    process); True if this call started it."""
    global _started, _thread, _fork_hooked
    with _start_lock:
        if _started:
            return False
        _started = True
    if not _fork_hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork)
        _fork_hooked = True
    thread = threading.Thread(target=_load, name="secure-import-warmup", daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return False  # no thread to be had: the request imports it when needed
    _thread = thread
    return True


def wait(timeout: float = WAIT_SECONDS) -> bool:
    """Return once the warm-up has ended (at once if none runs); False if it
    is still running after ``timeout`` seconds.

    Safe to call from a finder, with the global import lock held (see the
    module's docstring).
    """
    thread = _thread
    if thread is None or thread is threading.current_thread() or not thread.is_alive():
        return True
    released = 0
    try:
        while True:
            try:
                _imp.release_lock()
            except RuntimeError:
                break  # not (or no longer) held by this thread
            released += 1
        thread.join(timeout)
    finally:
        for _ in range(released):
            _imp.acquire_lock()
    return not thread.is_alive()
