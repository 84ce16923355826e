"""What the development server sees and says: requests, scripted responses, access records.

:class:`RequestInfo` is a request as received (recorded before any answer);
:class:`Response` is a scripted answer a test's ``handler_hook`` returns to
misbehave on purpose; :class:`AccessRecord` is one finished request as an
access log line (protocol, method, path, status, body bytes), the shape
``secure-import serve -v`` prints and the test suite's nginx logs too, so a
test can compare our server's traffic with a real one's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_MAX_DURATION",
    "MAX_RESPONSE_BYTES",
    "AccessRecord",
    "Hook",
    "RequestInfo",
    "Response",
    "escape_log_text",
]

#: Cap on the bytes any single response sends (endless bodies stop here).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Default wall-clock cap on writing one hook response (delay + body).
DEFAULT_MAX_DURATION = 30.0


@dataclass(frozen=True)
class RequestInfo:
    """One request as the server received it.

    ``path`` is the raw request target exactly as sent (not decoded, query
    included), so tests can tell ``/%2e%2e/x`` from ``/../x``.  ``headers`` has
    lower-cased names; repeated headers are joined with ``", "``.  ``time`` is
    :func:`time.monotonic` at receipt, comparable with the test's own readings.
    ``peer`` is the client's ``host:port``: requests with the same peer came
    over the same (keep-alive) connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    time: float
    peer: str = ""


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


def escape_log_text(text: str) -> str:
    """``text`` with everything but printable ASCII escaped (``\\xNN``,
    ``\\uNNNN``) and backslashes doubled: a request path is chosen by the
    client, and a log line must not be forged (a newline), recolour a
    terminal (an escape sequence) or be ambiguous (a literal ``\\x0a``)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


@dataclass(frozen=True)
class AccessRecord:
    """One finished request, as an access log records it.

    ``status`` is 0 when no response was sent (a scripted abort); ``bytes``
    counts what was written after the headers (the body, with any chunk
    framing).  :meth:`line` is the tab-separated form; :meth:`parse` reads it
    back (the test suite's nginx is configured to log exactly this form).
    """

    protocol: str
    method: str
    path: str
    status: int
    bytes: int
    #: :func:`time.time` when the response was finished.
    time: float = 0.0

    def line(self) -> str:
        """``protocol<TAB>method<TAB>path<TAB>status<TAB>bytes``, each field
        escaped (:func:`escape_log_text`)."""
        fields = (self.protocol, self.method, self.path, str(self.status), str(self.bytes))
        return "\t".join(escape_log_text(f) for f in fields)

    def human(self) -> str:
        """``HH:MM:SS METHOD PATH STATUS BYTES``: the line ``serve -v`` prints."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.time or time.time()))
        status = str(self.status) if self.status else "-"
        return (
            f"{stamp} {escape_log_text(self.method or '-')} {escape_log_text(self.path or '-')} "
            f"{status} {self.bytes}"
        )

    @classmethod
    def parse(cls, line: str) -> AccessRecord:
        """Read a :meth:`line` back.

        Raises:
            ValueError: not five tab-separated fields with numeric status and bytes.
        """
        protocol, method, path, status, size = line.split("\t")
        return cls(protocol, method, path, int(status), int(size))
