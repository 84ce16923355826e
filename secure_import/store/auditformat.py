"""The audit record's line format: field names, the canonical JSON line, the
timestamp, and the hash that chains one line to the next.

Pure string work, no I/O: :mod:`secure_import.store.audit` writes the lines,
:mod:`secure_import.store.auditchain` checks them.  A record's line is exactly
``json.dumps(record, sort_keys=True, separators=(",", ":"))`` (``prev``
included), and a record's hash is the sha256 of its line without the newline:
the fast paths here (:func:`split_record`, :data:`LOAD_HEAD`) must keep both
byte for byte, since every existing log is chained with them.
"""

from __future__ import annotations

import hashlib
import json
import time

__all__ = [
    "ENCODER",
    "FIELDS",
    "FIELD_SET",
    "GENESIS",
    "LOAD_HEAD",
    "LOAD_TAIL",
    "QUOTE",
    "line_hash",
    "split_record",
    "timestamp",
]

#: ``prev`` of the first record.
GENESIS = "0" * 64
FIELDS = (
    "time",
    "event",
    "outcome",
    "module",
    "url",
    "sha256",
    "manifest_version",
    "key_id",
    "repo",
    "host",
    "code",
    "message",
    "via",
    "pid",
)
#: Encodes values other than ``str`` and ``int`` (none today) exactly as
#: ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` does.
ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
QUOTE = json.encoder.encode_basestring_ascii
FIELD_SET = frozenset(FIELDS)
#: The line of a load record around its ``prev`` value, keys in sorted order
#: (as ``json.dumps(sort_keys=True)`` puts them); ``%s`` slots take values
#: already JSON-quoted, ``%d`` slots exact ints.
LOAD_HEAD = (
    '{"event":"load","host":%s,"key_id":%s,"manifest_version":%d,"module":%s,"outcome":"ok",'
    '"pid":%d,"prev":'
)
LOAD_TAIL = ',"repo":%s,"sha256":%s,"time":"%s","url":%s}'


def split_record(record: dict[str, object]) -> tuple[str, str]:
    """The record's line around the value of ``prev`` (not in ``record``
    yet): ``head + '"' + prev + '"' + tail`` is byte for byte what
    ``json.dumps({**record, "prev": prev}, sort_keys=True, separators=(",", ":"))``
    gives, since that encodes each value on its own, in key order."""
    before: list[str] = []
    after: list[str] = []
    part = before
    for key in sorted([*record, "prev"]):
        if key == "prev":
            part = after
            continue
        value = record[key]
        kind = type(value)
        if kind is str:
            text = QUOTE(value)  # type: ignore[arg-type]
        elif kind is int:
            text = int.__repr__(value)
        else:
            text = ENCODER.encode(value)
        part.append(f"{QUOTE(key)}:{text}")
    head = "{" + ",".join([*before, '"prev":'])
    tail = "".join("," + item for item in after) + "}"
    return head, tail


#: (whole second since the epoch, its "YYYY-MM-DDTHH:MM:SS" in UTC): formatting
#: the second once and the microseconds per record is ~0.8 us cheaper than
#: ``datetime.now(UTC).isoformat()``.  One tuple, so threads swap it atomically.
_second: tuple[int, str] = (-1, "")


def timestamp(micros: int) -> str:
    """``micros`` since the epoch as ``2026-01-31T23:59:59.123456Z``: exactly
    ``datetime.fromtimestamp(micros / 10**6, UTC).isoformat(timespec="microseconds")``
    with ``Z`` for ``+00:00``, the format every record has had."""
    global _second
    second, fraction = divmod(micros, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{fraction:06d}Z"


def line_hash(line: bytes) -> str:
    """The hash the next record names as ``prev``: sha256 of the line without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()
