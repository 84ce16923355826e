"""Reading the audit log for people and log shippers: filters and raw export.

``secure-import audit show`` and ``audit export`` select records by time
range, module, repository, serving host, event and outcome.  Export writes the stored lines
byte for byte, so a receiver can still check the hash chain of an unfiltered
export with ``secure-import audit verify``.

Reading never follows a symlink planted in place of the log (as
:mod:`secure_import.store.audit` does), and lines that are not JSON objects are
skipped here; :func:`secure_import.store.audit.verify_chain` is what reports them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["AuditFilter", "parse_time", "read_lines"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (``2024-05-01``, ``2024-05-01T12:00:00Z``) or an age
    before ``now`` (``30m``, ``2h``, ``7d``, ``1w``).  Naive times are UTC.

    Raises:
        ValueError: neither form.
    """
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 such as 2024-05-01T12:00:00Z, "
            "or an age such as 30m, 2h, 7d)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record_time(record: dict[str, object]) -> datetime | None:
    value = record.get("time")
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class AuditFilter:
    """Which records to keep; an empty criterion keeps everything.

    ``modules`` match a module and its submodules; ``repos`` match a substring
    of the record's repository URL; ``hosts`` match the host that served the
    bytes (a load or manifest record's ``host``, a refused mirror's), exactly
    or without its port (``cdn.example.org`` matches ``cdn.example.org:8443``),
    case-insensitively; ``outcomes`` and ``events`` match exactly.
    """

    since: datetime | None = None
    until: datetime | None = None
    modules: Sequence[str] = ()
    repos: Sequence[str] = ()
    outcomes: Sequence[str] = ()
    events: Sequence[str] = ()
    hosts: Sequence[str] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.since
            or self.until
            or self.modules
            or self.repos
            or self.outcomes
            or self.events
            or self.hosts
        )

    def matches(self, record: dict[str, object]) -> bool:
        if self.since is not None or self.until is not None:
            when = _record_time(record)
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when > self.until:
                return False
        if self.modules:
            module = str(record.get("module") or "")
            if not any(module == m or module.startswith(m + ".") for m in self.modules):
                return False
        if self.repos:
            repo = str(record.get("repo") or "")
            if not any(r in repo for r in self.repos):
                return False
        if self.hosts:
            host = str(record.get("host") or "").lower()
            if not any(_same_host(host, h.lower()) for h in self.hosts):
                return False
        if self.outcomes and record.get("outcome") not in self.outcomes:
            return False
        return not (self.events and record.get("event") not in self.events)


def _same_host(recorded: str, wanted: str) -> bool:
    """``wanted`` names ``recorded`` exactly, or without its port."""
    if not recorded or not wanted:
        return False
    return recorded == wanted or recorded.rpartition(":")[0] == wanted


def read_lines(path: Path) -> Iterator[tuple[bytes, dict[str, object]]]:
    """Each stored line (without its newline) with its parsed record."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\n")
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                yield line, value
