"""The request handler and TLS server class behind :class:`~secure_import.publish.serve.RepoServer`.

One connection thread per client: the TLS handshake runs there (a client that
never finishes it cannot stall the accept loop), then :class:`_Handler`
answers requests on it.  Normal serving maps a request target to a regular
file under the root and nothing else (see :meth:`RepoServer._resolve`); a
test's hook may answer instead with a scripted :class:`Response`, every
loop of which is bounded in bytes and time and watches the server's stop
event.  Each finished request is reported to the server as an
:class:`AccessRecord` (status and body bytes counted on the wire).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import socket
import socketserver
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from secure_import.publish.scripted import AccessRecord, RequestInfo, Response

if TYPE_CHECKING:
    from secure_import.publish.serve import RepoServer

__all__ = ["MAX_FILE_BYTES", "TLSServer", "read_capped"]

#: Largest file served from disk; bigger files get a 500 instead of being read.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Seconds a client has to finish the TLS handshake.
HANDSHAKE_TIMEOUT = 5.0
#: Seconds an idle keep-alive connection (or a stalled read/write) is kept.
CONNECTION_TIMEOUT = 10.0
#: Bytes per write when streaming a body without drip.
_CHUNK = 64 * 1024


class _CountingWriter:
    """The connection's writer, counting the bytes that went out (for the
    access record's body size)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.count = 0

    def write(self, data: bytes) -> int:
        written = int(self._inner.write(data))
        self.count += written
        return written

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)

    def writable(self) -> bool:
        return True


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; all state lives on the owning RepoServer."""

    protocol_version = "HTTP/1.1"
    server_version = "secure-import-dev"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT

    @property
    def _repo(self) -> RepoServer:
        return cast(TLSServer, self.server).repo

    def log_message(self, format: str, *args: object) -> None:
        """Stay silent: tests read :attr:`RepoServer.requests` instead of
        stderr, and ``serve -v`` prints :class:`AccessRecord` lines, escaped."""

    # --- accounting: one AccessRecord per finished request ----------------

    def setup(self) -> None:
        super().setup()
        self._writer = _CountingWriter(self.wfile)
        self.wfile = self._writer  # type: ignore[assignment]
        self._status = 0
        self._header_bytes = 0

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = int(code)
        super().send_response(code, message)

    def flush_headers(self) -> None:
        self._header_bytes += sum(len(h) for h in getattr(self, "_headers_buffer", ()))
        super().flush_headers()

    def handle_one_request(self) -> None:
        self._status = 0
        self._header_bytes = 0
        self.raw_requestline = b""
        self.command = ""
        self.path = ""
        self.request_version = ""
        start = self._writer.count
        try:
            super().handle_one_request()
        finally:
            if self.raw_requestline:
                sent = self._writer.count - start - self._header_bytes
                self._repo._finished(
                    AccessRecord(
                        self.request_version or "",
                        self.command or "",
                        # A request line that did not parse is logged whole.
                        self.path if self.command else getattr(self, "requestline", ""),
                        self._status,
                        max(sent, 0),
                        time.time(),
                    )
                )

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
        host, port = self.client_address[:2]
        info = RequestInfo(self.command, self.path, headers, time.monotonic(), f"{host}:{port}")
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
            body = read_capped(file_path)
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


def read_capped(path: Path) -> bytes:
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


class TLSServer(ThreadingHTTPServer):
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
