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
- HTTP/1.1 keep-alive, and nothing is logged to stderr; instead every request
  is recorded in :attr:`RepoServer.requests` so tests can assert what was, or
  was not, asked for.

Tests misbehave on purpose through ``handler_hook``: it sees each request first
and may answer with a :class:`Response` that redirects, fails, stalls, drips,
truncates, streams without end or claims an encoding.  Every one of those loops
is bounded in bytes (:data:`MAX_RESPONSE_BYTES`) and time
(:attr:`Response.max_duration`) and watches a stop event, so :meth:`RepoServer.stop`
returns within about two seconds even while a slow response is in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import shutil
import signal
import socket
import socketserver
import ssl
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from secure_import.errors import ConfigError
from secure_import.publish.devtls import make_dev_certificates, server_ssl_context

__all__ = [
    "MAX_RESPONSE_BYTES",
    "RepoServer",
    "RequestInfo",
    "Response",
    "serve_forever_cli",
]

#: The only address the server binds to.
BIND_HOST = "127.0.0.1"
#: Cap on the bytes any single response sends (endless bodies stop here).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Largest file served from disk; bigger files get a 500 instead of being read.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Default wall-clock cap on writing one hook response (delay + body).
DEFAULT_MAX_DURATION = 30.0
#: Seconds a client has to finish the TLS handshake.
HANDSHAKE_TIMEOUT = 5.0
#: Seconds an idle keep-alive connection (or a stalled read/write) is kept.
CONNECTION_TIMEOUT = 10.0
#: Bytes per write when streaming a body without drip.
_CHUNK = 64 * 1024
#: How long stop() waits for in-flight connections to wind down.
_STOP_GRACE = 1.0


@dataclass(frozen=True)
class RequestInfo:
    """One request as the server received it.

    ``path`` is the raw request target exactly as sent (not decoded, query
    included), so tests can tell ``/%2e%2e/x`` from ``/../x``.  ``headers`` has
    lower-cased names; repeated headers are joined with ``", "``.  ``time`` is
    :func:`time.monotonic` at receipt, comparable with the test's own readings.
    """

    method: str
    path: str
    headers: dict[str, str]
    time: float


@dataclass(frozen=True)
class Response:
    """A scripted answer a ``handler_hook`` returns instead of normal serving.

    Plain use: ``Response(status=500)``, ``Response(404, b"gone")``,
    ``Response.redirect("https://elsewhere/")``.  Misbehaviour, combinable:

    ``headers``
        Extra headers, sent as given (e.g. ``{"Content-Encoding": "gzip"}``;
        the body is *not* compressed for you).  A ``Content-Length`` or
        ``Content-Type`` here replaces the server's own.
    ``delay``
        Seconds to wait before sending anything (status line included).
    ``drip_interval``
        Seconds to wait before *each byte* of the body.
    ``truncate_after``
        Send only the first N body bytes, then close the connection, while
        ``Content-Length`` still announces the full length.
    ``endless``
        Repeat ``body`` (or zero bytes if empty) until the client disconnects,
        ``max_bytes`` is reached, or ``max_duration`` passes.  Without
        ``chunked`` or an explicit ``content_length`` the body is delimited by
        closing the connection and no ``Content-Length`` is sent.
    ``chunked``
        Use ``Transfer-Encoding: chunked`` instead of ``Content-Length``.
    ``content_length``
        Announce this ``Content-Length`` instead of the real one (a lie, if
        you want it to be).
    ``abort``
        After ``delay``, reset the connection without sending a response.
    ``max_bytes`` / ``max_duration``
        Bounds on body bytes written and on seconds spent on this response;
        when either is hit the connection is closed.

    HEAD requests get the status and headers only; 1xx, 204 and 304 never
    carry a body.
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip_interval: float = 0.0
    truncate_after: int | None = None
    endless: bool = False
    chunked: bool = False
    content_length: int | None = None
    abort: bool = False
    max_bytes: int = MAX_RESPONSE_BYTES
    max_duration: float = DEFAULT_MAX_DURATION

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"HTTP status out of range: {self.status}")
        if self.delay < 0 or self.drip_interval < 0 or self.max_duration <= 0:
            raise ValueError("delay, drip_interval and max_duration must be >= 0 (> 0)")
        if self.truncate_after is not None and self.truncate_after < 0:
            raise ValueError("truncate_after must be >= 0")
        if not 0 <= self.max_bytes <= MAX_RESPONSE_BYTES:
            raise ValueError(f"max_bytes must be between 0 and {MAX_RESPONSE_BYTES}")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A redirect to ``location`` (any URL, including ``http://`` or another host)."""
        return cls(status=status, headers={"Location": location})


Hook = Callable[[RequestInfo], Response | None]


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; all state lives on the owning RepoServer."""

    protocol_version = "HTTP/1.1"
    server_version = "secure-import-dev"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT

    @property
    def _repo(self) -> RepoServer:
        return cast(_TLSServer, self.server).repo

    def log_message(self, format: str, *args: object) -> None:
        """Stay silent: tests read :attr:`RepoServer.requests` instead of stderr."""

    # --- dispatch --------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        repo = self._repo
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        info = RequestInfo(self.command, self.path, headers, time.monotonic())
        repo._record(info)
        if repo._hook is not None:
            scripted = repo._hook(info)
            if scripted is not None:
                self._send_scripted(scripted)
                return
        if self.command not in ("GET", "HEAD"):
            self._send_simple(HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, HEAD"})
            return
        self._serve_file(headers.get("if-none-match"))

    # --- normal serving --------------------------------------------------

    def _send_simple(self, status: HTTPStatus, extra: Mapping[str, str] | None = None) -> None:
        """A short plain-text answer that keeps the connection alive."""
        body = b"" if self.command == "HEAD" else f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _serve_file(self, if_none_match: str | None) -> None:
        repo = self._repo
        file_path = repo._resolve(self.path)
        if file_path is None:
            self._send_simple(HTTPStatus.NOT_FOUND)
            return
        try:
            body = _read_capped(file_path)
        except FileNotFoundError:
            self._send_simple(HTTPStatus.NOT_FOUND)
            return
        except OSError:
            self._send_simple(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        if if_none_match is not None and _etag_matches(if_none_match, etag):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", _content_type(file_path))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- scripted responses ----------------------------------------------

    def _send_scripted(self, resp: Response) -> None:
        stop = self._repo._stop_event
        deadline = time.monotonic() + resp.max_duration
        if resp.delay and stop.wait(min(resp.delay, resp.max_duration)):
            self.close_connection = True
            return
        if resp.abort:
            self._abort()
            return

        has_body = self.command != "HEAD" and not (resp.status < 200 or resp.status in (204, 304))
        user = {k.lower() for k in resp.headers}
        body_len = min(len(resp.body), resp.max_bytes)
        truncated = resp.truncate_after is not None and resp.truncate_after < body_len
        if truncated and resp.truncate_after is not None:
            body_len = resp.truncate_after
        # Any framing that may not match what is sent ends the connection, so
        # the next request never reads leftovers or waits for missing bytes.
        will_close = (
            resp.endless
            or truncated
            or body_len < len(resp.body)
            or resp.content_length is not None
            or "content-length" in user
        )

        self.send_response(resp.status)
        if "content-type" not in user:
            self.send_header("Content-Type", "application/octet-stream")
        if "content-length" in user:
            pass
        elif resp.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif resp.content_length is not None:
            self.send_header("Content-Length", str(resp.content_length))
        elif resp.endless:
            pass  # delimited by closing the connection
        elif resp.status >= 200 and resp.status not in (204, 304):
            self.send_header("Content-Length", str(len(resp.body)))
        if will_close and "connection" not in user:
            self.send_header("Connection", "close")
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if will_close:
            self.close_connection = True
        if not has_body:
            return

        chunks: Iterator[bytes]
        if resp.endless:
            chunks = _repeat(resp.body or b"\0" * _CHUNK, resp.max_bytes)
        else:
            chunks = _slices(resp.body, body_len)
        finished = self._write_body(chunks, resp, stop, deadline)
        if not finished:
            self.close_connection = True
        elif resp.chunked and not will_close:
            self.wfile.write(b"0\r\n\r\n")

    def _write_body(
        self,
        chunks: Iterator[bytes],
        resp: Response,
        stop: threading.Event,
        deadline: float,
    ) -> bool:
        """Write ``chunks``; False if stopped, past the deadline, or the peer left.

        Each iteration is bounded: the iterator yields at most ``max_bytes``,
        and every write is preceded by a stop/deadline check.
        """
        try:
            for chunk in chunks:
                pieces = (
                    (chunk[i : i + 1] for i in range(len(chunk)))
                    if resp.drip_interval > 0
                    else (chunk,)
                )
                for piece in pieces:
                    if resp.drip_interval > 0:
                        wait = min(resp.drip_interval, max(0.0, deadline - time.monotonic()))
                        if stop.wait(wait):
                            return False
                    if stop.is_set() or time.monotonic() >= deadline:
                        return False
                    if resp.chunked:
                        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                    self.wfile.write(piece)
        except OSError:
            # The client hung up (or stop() shut the socket): that is how an
            # endless body is meant to end.
            return False
        return True

    def _abort(self) -> None:
        """Reset the TCP connection: SO_LINGER 0 makes close() send RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


def _slices(data: bytes, limit: int) -> Iterator[bytes]:
    """``data[:limit]`` in chunks of at most ``_CHUNK`` bytes."""
    for start in range(0, limit, _CHUNK):
        yield data[start : min(start + _CHUNK, limit)]


def _repeat(pattern: bytes, total: int) -> Iterator[bytes]:
    """``pattern`` repeated, cut off at exactly ``total`` bytes, in chunks of ~64 KiB."""
    tile = pattern * max(1, _CHUNK // len(pattern))
    sent = 0
    while sent < total:  # terminates: sent grows by >= 1 each turn
        piece = tile[: total - sent]
        sent += len(piece)
        yield piece


def _etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list against ``etag``."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


def _content_type(path: Path) -> str:
    """A guessed type, but never one that implies a content encoding."""
    guessed, encoding = mimetypes.guess_type(path.name, strict=True)
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    return guessed


def _read_capped(path: Path) -> bytes:
    """Read a regular file, refusing (OSError) anything above MAX_FILE_BYTES."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(str(path))
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


# What socketserver passes around as "the request" (a socket, for TCP).
_Request = socket.socket | tuple[bytes, socket.socket]


class _TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake inside each connection thread."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], repo: RepoServer) -> None:
        self.repo = repo
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can take seconds; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: _Request, client_address: Any) -> None:
        raw = cast(socket.socket, request)
        repo = self.repo
        try:
            # Small responses must not wait for delayed ACKs (Nagle): ~40 ms each.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(HANDSHAKE_TIMEOUT)
            conn = repo._ssl_context.wrap_socket(raw, server_side=True)
        except OSError:
            # Handshake refused or broken: typically the client rejected our
            # certificate, which is exactly what some tests want.
            with contextlib.suppress(OSError):
                raw.close()
            return
        repo._track(conn, add=True)
        try:
            conn.settimeout(CONNECTION_TIMEOUT)
            _Handler(conn, client_address, self)
        finally:
            repo._track(conn, add=False)
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def shutdown_request(self, request: _Request) -> None:
        # finish_request already closed the TLS socket; the raw one was
        # detached by wrap_socket and must not be shut down twice.
        with contextlib.suppress(OSError):
            cast(socket.socket, request).close()

    def handle_error(self, request: _Request, client_address: Any) -> None:
        # Never print to stderr.  Broken connections are routine; anything
        # else (a bug, a raising hook) is kept for the test to inspect.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.repo._record_error(exc)


class RepoServer:
    """Serve ``root`` over HTTPS on 127.0.0.1 in a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.  ``port=0``
    picks a free port; :attr:`url` tells which.  ``handler_hook`` sees every
    request first and may return a :class:`Response` to send instead of the
    file; it runs in the connection's thread, concurrently for concurrent
    requests, so it must be thread-safe.  :attr:`errors` collects exceptions
    raised by the hook or the handler (connection errors excepted), since
    nothing is printed.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        ssl_context: ssl.SSLContext,
        handler_hook: Hook | None = None,
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
        self._lock = threading.Lock()
        self._requests: list[RequestInfo] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._httpd: _TLSServer | None = None
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
            httpd = _TLSServer((BIND_HOST, self._port), self)
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
            return _read_capped(path)
        except OSError:
            return None

    # --- internals used by the handler -----------------------------------

    def _record(self, info: RequestInfo) -> None:
        with self._lock:
            self._requests.append(info)

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


def serve_forever_cli(root: Path, port: int, *, as_json: bool = False) -> None:
    """Serve ``root`` on https://127.0.0.1:PORT/ until Ctrl-C (``secure-import serve``).

    Makes a throwaway CA, writes its certificate into a fresh private (0700)
    temporary directory, prints the URL, the CA path and how to trust it, and
    serves.  With ``as_json`` those facts are one JSON line instead (``--json``).
    On KeyboardInterrupt, SIGTERM or SIGHUP it stops the server, removes the
    directory and returns normally (a service manager's stop leaves no
    ``ca.pem`` behind).

    Raises:
        ConfigError: ``root`` is not a directory or the port cannot be bound.
    """
    certs = make_dev_certificates()
    ctx = server_ssl_context(certs)
    server = RepoServer(root, port=port, ssl_context=ctx)
    tmp = Path(tempfile.mkdtemp(prefix="secure-import-serve-"))
    previous = _stop_on_signals()
    try:
        os.chmod(tmp, 0o700)
        ca_path = tmp / "ca.pem"
        fd = os.open(ca_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(certs.ca_pem)
        server.start()
        if as_json:
            print(
                json.dumps(
                    {"ok": True, "url": server.url, "root": str(root), "ca_bundle": str(ca_path)}
                ),
                flush=True,
            )
        else:
            print(f"Serving {root} at {server.url}", flush=True)
            print(f"CA certificate: {ca_path}", flush=True)
            print(
                f'Hint: in Python, trust it with ca_bundle="{ca_path}" '
                "(throwaway CA, valid 2 days, 127.0.0.1/localhost only). Ctrl-C stops.",
                flush=True,
            )
        while True:  # runs until Ctrl-C, by design
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (main thread only), so
    every way of stopping the server runs its clean-up; return the old handlers."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _interrupt)
    return previous
