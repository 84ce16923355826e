"""Strict JSON decoding for signed metadata (pure: bytes in, objects out).

Python's :mod:`json` is lenient in ways an attacker can use: it keeps the last
of two duplicate keys (``"version": 1, "version": 99``), accepts ``NaN`` and
``Infinity``, turns ``1e999`` into ``inf``, converts 5,000-digit integers at
quadratic cost, lets lone surrogates through as ``str`` values, and recurses
once per nesting level.  Our metadata formats need none of that, so this module
refuses all of it up front and reports every failure as one exception type.

Invariants of :func:`loads`:

- the only exception it raises is :class:`~secure_import.errors.FormatError`
  (``check="json"``), naming what was being parsed;
- input is strict UTF-8 with no byte-order mark; only JSON whitespace may
  surround the single document;
- duplicate object keys are refused;
- ``NaN``, ``Infinity``, ``-Infinity`` and every float (``1.0``, ``1e999``)
  are refused: our formats have no floats;
- integers of more than :data:`MAX_INT_DIGITS` digits are refused before any
  conversion, so huge integers cost linear time;
- strings (keys and values) containing lone surrogates are refused;
- nesting deeper than ``max_depth`` is refused by a linear, non-recursive
  pre-scan before the decoder runs.
"""

from __future__ import annotations

import binascii
import json
import re

from secure_import.errors import FormatError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["DEFAULT_MAX_DEPTH", "MAX_INT_DIGITS", "b64decode_strict", "dumps_canonical", "loads"]

DEFAULT_MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted by default."""

MAX_INT_DIGITS = 20
"""Longest integer literal (in digits, sign excluded) accepted."""

_UTF8_BOM = b"\xef\xbb\xbf"

# Outside strings we only care about quotes and brackets; inside strings only
# about quotes and backslashes.  Searching for the next interesting byte keeps
# the pre-scan linear without a per-byte Python loop.
_OUTSIDE = re.compile(rb'["\[\]{}]')
_INSIDE = re.compile(rb'["\\]')


class _Refusal(Exception):
    """Internal signal raised from json hooks; always mapped to FormatError."""


def _refuse(reason: str) -> NoReturn:
    raise _Refusal(reason)


def _check_depth(data: bytes, max_depth: int) -> None:
    """Refuse ``data`` if brackets nest deeper than ``max_depth`` outside strings."""
    depth = 0
    pos = 0
    end = len(data)
    while pos < end:
        match = _OUTSIDE.search(data, pos)
        if match is None:
            return
        char = data[match.start()]
        pos = match.end()
        if char == 0x22:  # '"': skip to the end of the string, honouring escapes
            while True:
                inner = _INSIDE.search(data, pos)
                if inner is None:
                    return  # unterminated string: the decoder reports it
                pos = inner.end()
                if data[inner.start()] == 0x5C:  # backslash escapes the next byte
                    pos += 1
                    continue
                break
        elif char in (0x5B, 0x7B):  # '[' or '{'
            depth += 1
            if depth > max_depth:
                _refuse(f"nesting deeper than {max_depth} levels")
        else:
            depth -= 1


def _parse_int(text: str) -> int:
    if not text.isascii():
        _refuse("non-ASCII digits in an integer")
    digits = len(text) - (1 if text.startswith("-") else 0)
    if digits > MAX_INT_DIGITS:
        _refuse(f"integer of {digits} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(text)


def _parse_float(text: str) -> NoReturn:
    _refuse(f"floating-point number {text[:40]!r} (floats are not allowed)")


def _parse_constant(text: str) -> NoReturn:
    _refuse(f"non-finite number {text!r}")


def _check_str(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _refuse("string containing a lone surrogate escape")


def _object_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        _check_str(key)
        if key in result:
            _refuse(f"duplicate key {key[:80]!r}")
        result[key] = value
    return result


def _check_strings(document: object) -> None:
    """Walk the decoded document (iteratively) and refuse unencodable strings."""
    stack: list[object] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_str(item)
        elif isinstance(item, dict):
            stack.extend(item.values())  # keys were checked by _object_pairs
        elif isinstance(item, list):
            stack.extend(item)


def loads(
    data: bytes,
    *,
    what: str,
    url: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> object:
    """Decode one strict JSON document from ``data``.

    ``what`` names the document (``"manifest"``, ``"envelope"``...) in error
    messages; ``url`` is attached to the error when known.

    Raises:
        FormatError: for any input that is not strict JSON as described in the
            module docstring (``check="json"``).  No other exception escapes.
    """
    try:
        if not isinstance(data, bytes):
            _refuse(f"expected bytes, got {type(data).__name__}")
        if data.startswith(_UTF8_BOM):
            _refuse("byte-order mark before the document")
        try:
            text = data.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            _refuse(f"invalid UTF-8 at byte {exc.start}")
        _check_depth(data, max_depth)
        document: object = json.loads(
            text,
            object_pairs_hook=_object_pairs,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_parse_constant,
        )
        _check_strings(document)
    except _Refusal as exc:
        raise FormatError(f"{what} is not strict JSON: {exc}", check="json", url=url) from None
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            check="json",
            url=url,
        ) from exc
    except (RecursionError, ValueError, TypeError) as exc:
        raise FormatError(
            f"{what} could not be decoded as JSON ({type(exc).__name__})", check="json", url=url
        ) from exc
    return document


def dumps_canonical(obj: object) -> bytes:
    """Serialise ``obj`` as canonical JSON: sorted keys, no spaces, ASCII only.

    Publishers use this so the same document always yields the same bytes.

    Raises:
        TypeError: if ``obj`` holds something JSON cannot represent.
        ValueError: if ``obj`` holds a non-finite float or a reference cycle.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def b64decode_strict(text: object, *, what: str, url: str | None = None) -> bytes:
    """Decode a JSON string holding strict, canonical standard base64 (with padding).

    The decoded bytes must re-encode to exactly ``text``: this refuses the
    URL-safe alphabet, missing or extra padding, whitespace and line breaks,
    and non-zero pad bits, so each byte string has one accepted encoding.

    Raises:
        FormatError: if ``text`` is not a string of canonical standard base64
            (``check="base64"``, naming ``what``).
    """
    if not isinstance(text, str):
        raise FormatError(f"{what} must be a base64 string", check="base64", url=url)
    import base64

    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not strict standard base64", check="base64", url=url) from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} is not canonical standard base64", check="base64", url=url)
    return raw
