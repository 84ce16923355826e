"""Checking an audit log's hash chain: the reader's side of
:mod:`secure_import.store.audit` (``secure-import audit verify``).

Invariants of the check:

- every record's ``prev`` must be the hash of the line before it (the first
  one's :data:`~secure_import.store.auditformat.GENESIS`), so an edited,
  deleted or inserted line is reported at the first line it breaks
  (THREATS L6);
- the last line must be the one the anchor beside the log names, so lines
  removed at the end are reported too; and, when a witness kept apart is
  given, the one it remembers (the log replaced together with its anchor);
- ``chain-restart`` and ``audit-repair`` records do not break the chain, but
  every one is reported, so a restarted or repaired log never reads as a
  clean history (THREATS H7).

It only reads: nothing here writes, locks or repairs the log.
"""

from __future__ import annotations

import json
import os

from secure_import._frozen import Frozen
from secure_import.store.auditfile import NOFOLLOW, anchor_name, read_anchor
from secure_import.store.auditformat import GENESIS, line_hash

# AuditLog re-exports this module: no dataclasses or pathlib on import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]

__all__ = ["ChainReport", "verify_chain"]


class ChainReport(Frozen):
    """What :func:`verify_chain` found."""

    _fields = ("ok", "records", "broken_at", "reason", "restarts", "repairs")
    __slots__ = _fields

    ok: bool
    records: int
    #: 1-based line number of the first line whose ``prev`` does not match.
    broken_at: int | None
    reason: str | None
    #: ``"line N: message"`` for every ``chain-restart`` record: the chain is
    #: intact from there on, but what came before it is not in this file.
    restarts: tuple[str, ...]
    #: ``"line N: message"`` for every ``audit-repair`` record.
    repairs: tuple[str, ...]

    def __init__(
        self,
        ok: bool,
        records: int,
        broken_at: int | None = None,
        reason: str | None = None,
        restarts: tuple[str, ...] = (),
        repairs: tuple[str, ...] = (),
    ) -> None:
        init = object.__setattr__
        init(self, "ok", ok)
        init(self, "records", records)
        init(self, "broken_at", broken_at)
        init(self, "reason", reason)
        init(self, "restarts", restarts)
        init(self, "repairs", repairs)


def verify_chain(path: StrPath, *, witness: StrPath | None = None) -> ChainReport:
    """Check every record's ``prev`` against the line before it, and the last
    line against the anchor and (if given) the witness kept apart."""
    anchor = read_anchor(anchor_name(path))
    seen = None if witness is None else read_anchor(witness)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        if anchor is not None or (seen is not None and seen != GENESIS):
            return ChainReport(
                False,
                0,
                1,
                "the log is missing but its anchor or witness says records were written "
                "(deleted log)",
            )
        return ChainReport(True, 0)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    if data and not data.endswith(b"\n"):
        lines = data.split(b"\n")
        return ChainReport(
            False, len(lines) - 1, len(lines), "the last line is incomplete (truncated log)"
        )
    expected = GENESIS
    count = 0
    restarts: list[str] = []
    repairs: list[str] = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return ChainReport(False, count, number, "line is not valid JSON (edited)")
        if not isinstance(record, dict) or record.get("prev") != expected:
            return ChainReport(
                False,
                count,
                number,
                "prev hash does not match the line before (edited, inserted or deleted line)",
            )
        if record.get("event") == "chain-restart":
            restarts.append(f"line {number}: {record.get('message')}")
        elif record.get("event") == "audit-repair":
            repairs.append(f"line {number}: {record.get('message')}")
        expected = line_hash(line)
        count += 1
    if anchor is not None and anchor != expected:
        return ChainReport(
            False,
            count,
            count + 1,
            "the log ends before the newest record written (lines removed at the end)",
        )
    if seen is not None and seen != expected and seen != GENESIS:
        return ChainReport(
            False,
            count,
            count + 1,
            "the log does not end with the newest record its witness remembers "
            "(lines removed, or the log replaced together with its anchor)",
        )
    return ChainReport(True, count, restarts=tuple(restarts), repairs=tuple(repairs))
