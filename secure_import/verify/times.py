"""Times in signed documents: exactly ``YYYY-MM-DDTHH:MM:SSZ``, always UTC (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from secure_import.errors import FormatError
from secure_import.verify.paths import show

__all__ = ["format_time", "parse_time", "parse_time_field"]

_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def format_time(dt: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC.

    Fractions of a second are dropped (the format has none).

    Raises:
        FormatError: if ``dt`` is not a timezone-aware datetime.
    """
    if not isinstance(dt, datetime) or dt.utcoffset() is None:
        raise FormatError("times must be timezone-aware datetimes", check="time", got=repr(dt))
    try:
        utc = dt.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise FormatError("time out of range", check="time", got=repr(dt)) from exc
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )


def parse_time_field(value: object, *, what: str, url: str | None) -> datetime:
    """``value`` (a field of a signed document called ``what``) as an aware UTC time."""
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise FormatError(
            f"{what} must be a time of the form YYYY-MM-DDTHH:MM:SSZ",
            check="time",
            url=url,
            got=show(value),
        )
    try:
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise FormatError(
            f"{what} is not a valid time", check="time", url=url, got=show(value)
        ) from exc


def parse_time(s: str) -> datetime:
    """Parse exactly ``YYYY-MM-DDTHH:MM:SSZ`` into an aware UTC datetime.

    Raises:
        FormatError: if ``s`` is not of exactly that form or not a real time.
    """
    return parse_time_field(s, what="time", url=None)
