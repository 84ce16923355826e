"""The benchmark's HTTPS server: RepoServer plus injected latency and counters.

- per-request delay: a ``handler_hook`` that sleeps, then lets normal serving
  answer (so 200, 304 and 404 all cost one round trip);
- per-new-connection delay, and the count of new TLS connections: an
  ``ssl.SSLContext`` subclass whose ``wrap_socket`` (called once per accepted
  connection, in that connection's thread, before the handshake) counts and
  sleeps.  ``serve.py`` is used unchanged;
- every accepted socket gets ``TCP_NODELAY`` (as production servers do), so
  Nagle plus delayed ACK does not add ~40 ms to a connection's first answer;
- the certificate comes from a throwaway trustme CA written to ``ca.pem``.

Status codes and body sizes are not recorded by RepoServer, so
:meth:`BenchServer.tally` recomputes them from the recorded requests and the
served files (normal serving is deterministic: missing file -> 404, matching
``If-None-Match`` -> 304, else 200 with the whole file).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from secure_import.publish.serve import RepoServer, RequestInfo, Response

__all__ = ["BenchServer", "Tally"]


class _CountingContext(ssl.SSLContext):
    """Server context that counts (and optionally delays) new connections."""

    connections = 0
    conn_delay = 0.0
    _count_lock = threading.Lock()

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        with self._count_lock:
            type(self).connections += 1
        # Production servers set TCP_NODELAY; RepoServer does not, and then the
        # client's delayed ACK adds ~40 ms to the first response on a connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.conn_delay:
            time.sleep(self.conn_delay)
        return super().wrap_socket(sock, *args, **kwargs)


@dataclass
class Tally:
    requests: int = 0
    connections: int = 0
    not_found: int = 0
    not_modified: int = 0
    body_bytes: int = 0


class BenchServer:
    """Serve ``root`` on 127.0.0.1 over HTTPS with injectable latency."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        delay: float = 0.0,
        conn_delay: float = 0.0,
        index_pages: bool = False,
        ca: trustme.CA | None = None,
    ) -> None:
        self.delay = delay
        #: Answer a directory URL (``/simple/pkg/``) with its ``index.html``: a
        #: PEP 503 index for the pip and uv rows (``pkgindex.py``).
        self.index_pages = index_pages
        ca = ca or trustme.CA()
        self.ca = ca
        cert = ca.issue_cert("127.0.0.1", "localhost")
        context_class = type(
            "_Ctx", (_CountingContext,), {"connections": 0, "_count_lock": threading.Lock()}
        )
        ctx = context_class(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        cert.configure_cert(ctx)
        ctx.conn_delay = conn_delay
        self._ctx = ctx
        self.ca_path = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.server = RepoServer(root, ssl_context=ctx, handler_hook=self._hook)
        self.server.start()

    @property
    def url(self) -> str:
        return self.server.url

    def _hook(self, request: RequestInfo) -> Response | None:
        if self.delay:
            time.sleep(self.delay)
        page = self._index_page(request.path)
        if page is not None:
            return Response(200, page, headers={"Content-Type": "text/html; charset=utf-8"})
        if self.index_pages:
            return self._index_file(request)
        return None

    def _index_file(self, request: RequestInfo) -> Response | None:
        """A file of the package index, with ``Accept-Ranges`` and ``Range``
        answers as real indexes give (uv asks with HEAD, then reads a wheel's
        metadata from its end before downloading it)."""
        body = self.server.read_file(request.path)
        if body is None:
            return None  # normal serving: a 404
        ranges = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        span = None
        if "range" in request.headers:
            span = _byte_range(request.headers["range"], len(body))
        if span is None:
            return Response(200, body, headers=ranges)
        start, end = span
        return Response(
            206,
            body[start:end],
            headers={
                "Content-Range": f"bytes {start}-{end - 1}/{len(body)}",
                "Accept-Ranges": "bytes",
            },
        )

    def _index_page(self, path: str) -> bytes | None:
        if not self.index_pages:
            return None
        target = path.split("?", 1)[0]
        if not target.endswith("/"):
            return None
        return self.server.read_file(target + "index.html")

    def reset(self) -> None:
        self.server.clear_requests()
        with self._ctx._count_lock:
            type(self._ctx).connections = 0

    def tally(self) -> Tally:
        """What the requests since the last :meth:`reset` cost."""
        out = Tally(connections=type(self._ctx).connections)
        for req in self.server.requests:
            out.requests += 1
            body = self._index_page(req.path) or self.server.read_file(req.path)
            if body is None:
                out.not_found += 1
                continue
            etag = f'"{hashlib.sha256(body).hexdigest()}"'
            if req.headers.get("if-none-match") == etag:
                out.not_modified += 1
                continue
            if req.method == "HEAD":
                continue
            span = None
            if self.index_pages and "range" in req.headers:
                span = _byte_range(req.headers["range"], len(body))
            out.body_bytes += len(body) if span is None else span[1] - span[0]
        return out

    def stop(self) -> None:
        self.server.stop()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` as a ``[start, end)`` slice;
    None for anything else (several ranges, other units, unsatisfiable)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    if start >= end:
        return None
    return start, end
