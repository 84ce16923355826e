"""Is the cached manifest still the current one?  Asked without trusting ETags.

The answer comes from the publisher's manifest pointer (:mod:`secure_import.verify.pointer`),
fetched unconditionally and compared with the cached envelope's own digest:

- the pointer names the cached envelope: the cached copy stays in force (a
  :class:`~secure_import.transport.base.Response` with status 304 and no body, as a conditional
  request would have answered);
- otherwise (no cached copy, the pointer names another envelope, the host has
  no pointer, or it is not a valid one): the manifest is fetched in full, with
  no ``If-None-Match``.

So a warm process still costs one small request, and a cold one or a new
release one more; neither depends on the server computing validators well
(THREATS H6), and no stored validator can pin the client to an old copy
(THREATS H5).  Transport failures propagate unchanged: the caller's offline
fallback applies to them as before.  Nothing here decides trust.
"""

from __future__ import annotations

from collections.abc import Callable

from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import FormatError, HTTPStatusError
from secure_import.transport.base import Response, Transport
from secure_import.verify.pointer import POINTER_MAX_BYTES, POINTER_NAME, parse_pointer

__all__ = ["ask_manifest"]


def ask_manifest(
    fetcher: Transport,
    base_url: str,
    *,
    cached: bytes | None,
    limits: Limits,
    waiting: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> Response:
    """The current manifest of the repository at ``base_url``, or a 304 when
    the publisher's pointer names ``cached`` exactly.

    ``waiting`` is called once the first request is out, and ``deadline``
    (the import's) bounds both requests (see
    :meth:`~secure_import.transport.base.Transport.get`).

    Raises:
        TransportError: the pointer or the manifest could not be fetched (a
            pointer the host does not have, 404 or 410, is not an error).
    """
    manifest_url = base_url + MANIFEST_NAME
    if cached:
        pointer_url = base_url + POINTER_NAME
        try:
            answer = fetcher.get(
                pointer_url,
                cap=POINTER_MAX_BYTES,
                what="manifest pointer",
                waiting=waiting,
                deadline=deadline,
            )
        except HTTPStatusError as exc:
            if exc.got not in (404, 410):
                raise
        else:
            try:
                pointer = parse_pointer(answer.body or b"", url=pointer_url)
            except FormatError:
                pointer = None  # not a pointer we understand: ask for the manifest itself
            if pointer is not None and pointer.names(cached):
                # Named after the source that answered (a mirror, maybe), so
                # the caller audits the host that said "current".
                served = answer.url
                if served.endswith(POINTER_NAME):
                    served = served[: -len(POINTER_NAME)] + MANIFEST_NAME
                return Response(served, 304, None, None)
    return fetcher.get(
        manifest_url,
        cap=limits.manifest_max_bytes,
        what="manifest",
        waiting=waiting,
        deadline=deadline,
    )
