"""The manifest pointer: which manifest is current, in a few dozen bytes (pure).

A client that holds a verified manifest must learn, once per process, whether
it is still the current one.  Asking with the cached copy's ETag
(``If-None-Match``) makes that answer depend on how the server computes ETags,
and real servers compute them badly: nginx, caddy and lighttpd derive them
from the file's modification time and size, so a manifest replaced by one of
the same size within the same second (or deployed with a fixed mtime, as
reproducible image builds do) keeps its ETag and the server answers 304 for
ever (THREATS H6).

So the publisher writes, next to the manifest, a pointer naming the current
manifest envelope by sha256, length and version, and the client fetches the
pointer *unconditionally* and compares digests itself: equal, the cached
envelope is current; different (or no usable pointer), the manifest is fetched
in full.  No validator computed by the server is ever trusted.

Invariants:

- the pointer is a hint, never trust: a matching pointer only keeps the cached
  envelope, which is verified exactly as a fresh one (signature, expiry,
  high-water mark); a pointer that lies can cause a full fetch or keep a copy
  the client already accepted, which is what a server replaying the old
  manifest could do anyway (bounded by expiry);
- it is parsed strictly (:mod:`.strictjson`, exact keys and types, capped at
  :data:`POINTER_MAX_BYTES`); anything else is "no usable pointer".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from secure_import.errors import FormatError
from secure_import.verify.strictjson import dumps_canonical, loads

__all__ = [
    "POINTER_FORMAT",
    "POINTER_MAX_BYTES",
    "POINTER_NAME",
    "Pointer",
    "make_pointer",
    "parse_pointer",
]

#: File name of the pointer, next to the manifest.
POINTER_NAME = "secure-import-current.json"
#: The only format understood.
POINTER_FORMAT = "secure-import-pointer/1"
#: Larger answers are not a pointer (read stops at this + 1 byte).
POINTER_MAX_BYTES = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"format", "sha256", "length", "version"})


@dataclass(frozen=True)
class Pointer:
    """The current manifest envelope as the publisher names it (unverified)."""

    sha256: str
    length: int
    version: int

    def names(self, envelope: bytes) -> bool:
        """Whether ``envelope`` is the manifest this pointer names."""
        return len(envelope) == self.length and hashlib.sha256(envelope).hexdigest() == self.sha256


def make_pointer(envelope: bytes, version: int) -> bytes:
    """The pointer file's bytes for a signed manifest ``envelope``."""
    return (
        dumps_canonical(
            {
                "format": POINTER_FORMAT,
                "sha256": hashlib.sha256(envelope).hexdigest(),
                "length": len(envelope),
                "version": version,
            }
        )
        + b"\n"
    )


def parse_pointer(data: bytes, *, url: str | None = None) -> Pointer:
    """Parse a pointer strictly.

    Raises:
        FormatError: not a pointer of the known format.
    """
    document = loads(data, what="manifest pointer", url=url)
    if not isinstance(document, dict) or set(document) != _KEYS:
        raise FormatError(
            "manifest pointer has the wrong fields",
            check="pointer",
            url=url,
            expected=sorted(_KEYS),
        )
    if document["format"] != POINTER_FORMAT:
        raise FormatError(
            "unknown manifest pointer format",
            check="pointer",
            url=url,
            expected=POINTER_FORMAT,
            got=document["format"],
        )
    sha256, length, version = document["sha256"], document["length"], document["version"]
    if not (isinstance(sha256, str) and _HEX64.fullmatch(sha256)):
        raise FormatError("manifest pointer sha256 is not 64 hex digits", check="pointer", url=url)
    for field, value in (("length", length), ("version", version)):
        if type(value) is not int or not 0 < value < 2**53:
            raise FormatError(
                f"manifest pointer {field} is not a positive integer",
                check="pointer",
                url=url,
                got=value,
            )
    assert isinstance(length, int) and isinstance(version, int)
    return Pointer(sha256, length, version)
