"""A static HTTPS file server for a signed repository directory, on 127.0.0.1 only.

Used by ``secure-import serve``, by the demos and by the test suite's publisher
simulator.  It is deliberately small and deliberately *not* a production
server.  What it guarantees:

- it listens on 127.0.0.1 only and speaks TLS only (the TLS handshake runs in
  the connection's own thread, so a client that never completes it cannot stall
  the accept loop);
- it serves regular files under ``root`` and nothing else: the URL path is
  percent-decoded once, and any empty, ``.``/``..`` or dot-prefixed segment,
  backslash or NUL, any directory, and anything that resolves (through
  symlinks) outside ``root`` or onto a dotfile is a plain 404;
- bodies are sent as stored, never compressed, with ``Content-Length`` and a
  strong ``ETag`` (quoted sha256 of the body); ``If-None-Match`` yields 304;
- HTTP/1.1 keep-alive, and nothing is printed by the server itself: every
  request is recorded in :attr:`RepoServer.requests` when it arrives (so tests
  can assert what was, or was not, asked for), and every finished one in
  :attr:`RepoServer.access` (status and bytes), which ``access_log`` receives
  too (``secure-import serve -v`` prints it, escaped).

Tests misbehave on purpose through ``handler_hook``: it sees each request first
and may answer with a :class:`Response` that redirects, fails, stalls, drips,
truncates, streams without end or claims an encoding.  Every one of those loops
is bounded in bytes (:data:`MAX_RESPONSE_BYTES`) and time
(:attr:`Response.max_duration`) and watches a stop event, so :meth:`RepoServer.stop`
returns within about two seconds even while a slow response is in flight.

The module is split by responsibility: :mod:`.scripted` (request, response
and access-record types), :mod:`.handler` (the request handler and TLS
server), this module (the server's lifecycle and records) and
:mod:`.servecli` (the ``secure-import serve`` command's glue).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote_to_bytes

from secure_import.errors import ConfigError
from secure_import.publish.handler import TLSServer, read_capped
from secure_import.publish.scripted import (
    MAX_RESPONSE_BYTES,
    AccessRecord,
    Hook,
    RequestInfo,
    Response,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "AccessRecord",
    "RepoServer",
    "RequestInfo",
    "Response",
]

#: The only address the server binds to.
BIND_HOST = "127.0.0.1"
#: How long stop() waits for in-flight connections to wind down.
_STOP_GRACE = 1.0


class RepoServer:
    """Serve ``root`` over HTTPS on 127.0.0.1 in a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.  ``port=0``
    picks a free port; :attr:`url` tells which.  ``handler_hook`` sees every
    request first and may return a :class:`Response` to send instead of the
    file; it runs in the connection's thread, concurrently for concurrent
    requests, so it must be thread-safe.  :attr:`errors` collects exceptions
    raised by the hook or the handler (connection errors excepted), since
    nothing is printed.  ``access_log`` is called with each finished
    request's :class:`AccessRecord` (from the connection's thread).
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        ssl_context: ssl.SSLContext,
        handler_hook: Hook | None = None,
        access_log: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"repository directory does not exist: {root}", check="serve-root")
        if not 0 <= port <= 65535:
            raise ConfigError("port out of range", check="serve-port", expected="0-65535", got=port)
        self._root = root.resolve(strict=True)
        self._port = port
        self._ssl_context = ssl_context
        self._hook = handler_hook
        self._access_log = access_log
        self._access: list[AccessRecord] = []
        self._lock = threading.Lock()
        self._requests: list[RequestInfo] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._httpd: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/``; only valid after :meth:`start`."""
        if self._httpd is None:
            raise RuntimeError("RepoServer.url is only known after start()")
        return f"https://{BIND_HOST}:{self._httpd.server_port}/"

    @property
    def port(self) -> int:
        """The bound port; only valid after :meth:`start`."""
        if self._httpd is None:
            raise RuntimeError("RepoServer.port is only known after start()")
        return self._httpd.server_port

    def start(self) -> None:
        """Bind 127.0.0.1 and serve in a daemon thread.

        Raises:
            ConfigError: the port cannot be bound.
            RuntimeError: already started (a server is not restartable).
        """
        if self._httpd is not None or self._stopped:
            raise RuntimeError("RepoServer can be started only once")
        try:
            httpd = TLSServer((BIND_HOST, self._port), self)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {BIND_HOST}:{self._port}: {exc}", check="serve-bind"
            ) from exc
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"secure-import-serve-{httpd.server_port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, cut open connections, and return within about two seconds.

        Safe to call more than once and before :meth:`start`.
        """
        if self._stop_event.is_set():
            return
        self._stopped = True
        self._stop_event.set()
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()  # returns after at most one poll_interval
        httpd.server_close()
        with self._lock:
            live = list(self._connections)
        for conn in live:
            # Shut the TCP socket under the TLS layer so threads blocked in
            # read or write wake up at once.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_GRACE
        with self._idle:
            while self._connections and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
        thread.join(timeout=_STOP_GRACE)

    def __enter__(self) -> RepoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what happened ---------------------------------------------------

    @property
    def requests(self) -> list[RequestInfo]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests (e.g. between phases of a test)."""
        with self._lock:
            self._requests.clear()
            self._access.clear()

    @property
    def access(self) -> list[AccessRecord]:
        """A snapshot of the finished requests (status, bytes), oldest first."""
        with self._lock:
            return list(self._access)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by the hook or the handler, oldest first."""
        with self._lock:
            return list(self._errors)

    def read_file(self, url_path: str) -> bytes | None:
        """The bytes normal serving would send for ``url_path``, or None for a 404.

        Lets a hook misbehave with real content, e.g. drip the real manifest.
        """
        path = self._resolve(url_path)
        if path is None:
            return None
        try:
            return read_capped(path)
        except OSError:
            return None

    # --- internals used by the handler -----------------------------------

    def _record(self, info: RequestInfo) -> None:
        with self._lock:
            self._requests.append(info)

    def _finished(self, record: AccessRecord) -> None:
        with self._lock:
            self._access.append(record)
        if self._access_log is not None:
            try:
                self._access_log(record)
            except Exception as exc:  # noqa: BLE001 - a logger must not kill the connection
                self._record_error(exc)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._idle:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
                self._idle.notify_all()

    def _resolve(self, target: str) -> Path | None:
        """Map a request target to a regular file under root, or None (404).

        Works on the origin-form target only; ``//host/x``-style paths and
        absolute-form targets are refused rather than parsed as URLs.
        """
        if not target.startswith("/"):
            return None
        raw = target.split("?", 1)[0].split("#", 1)[0]
        try:
            decoded = unquote_to_bytes(raw).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
        segments = decoded[1:].split("/")
        for seg in segments:
            if not seg or seg.startswith(".") or "\\" in seg or "\0" in seg:
                return None
        candidate = self._root.joinpath(*segments)
        try:
            resolved = candidate.resolve(strict=True)
            st = resolved.stat()
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self._root) or not stat.S_ISREG(st.st_mode):
            return None
        # A symlink inside root may still point at a dotfile inside root.
        if any(part.startswith(".") for part in resolved.relative_to(self._root).parts):
            return None
        return resolved
