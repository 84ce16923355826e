"""What the command line prints: results on stdout, diagnostics on stderr, JSON
with ``--json``, colour only on a terminal; exit codes."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

EXIT_OK = 0


EXIT_FAIL = 1


EXIT_USAGE = 2


class UsageError(Exception):
    """A usage problem found after argument parsing (exit 2)."""


def printable(text: str, *, lines: bool = True) -> str:
    """``text`` with every control character escaped (THREATS H8): names,
    URLs and messages in our output may come from an attacker (a refused
    module name, a redirect target) and must not move the cursor, recolour
    or retitle a terminal, or forge lines.  ``lines`` keeps newlines and
    tabs (our own multi-line text); table cells keep neither."""
    if text.isprintable():
        return text
    keep = "\n\t" if lines else ""
    return "".join(ch if ch.isprintable() or ch in keep else ascii(ch)[1:-1] for ch in text)


class Painted(str):
    """Text :meth:`Out.paint` escaped and coloured: printed as it is."""


# --- output ------------------------------------------------------------------


def _colour_wanted(stream: TextIO, flag: bool) -> bool:
    if not flag or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class Out:
    """How this invocation talks: JSON or human, how verbose, in colour or not."""

    json: bool = False
    verbosity: int = 0
    colour: bool = False
    colour_err: bool = False

    # Every human-readable line goes through printable(): our colour codes
    # are added after escaping, nothing else reaches the terminal raw.

    def result(self, text: str = "") -> None:
        print(text if isinstance(text, Painted) else printable(text))

    def note(self, text: str) -> None:
        """A secondary human line (hints, summaries); dropped by ``-q`` and ``--json``."""
        if self.verbosity >= 0 and not self.json:
            print(printable(text))

    def info(self, text: str) -> None:
        """A diagnostic on stderr; dropped by ``-q``."""
        if self.verbosity >= 0:
            print(printable(text), file=sys.stderr)

    def warn(self, text: str) -> None:
        print(
            self.paint(f"secure-import: warning: {printable(text)}", "33", err=True),
            file=sys.stderr,
        )

    def emit(self, value: object) -> None:
        print(json.dumps(value, indent=2, default=str))

    def paint(self, text: str, code: str, *, err: bool = False) -> Painted:
        """``text`` (escaped) in colour ``code`` when the stream is a terminal."""
        text = printable(text)
        if not (self.colour_err if err else self.colour):
            return Painted(text)
        return Painted(f"\x1b[{code}m{text}\x1b[0m")

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        status_column: int | None = None,
    ) -> None:
        """A plain aligned table; the status column is coloured on a terminal."""
        cells = [[printable(str(c), lines=False) for c in row] for row in rows]
        widths = [len(h) for h in headers]
        for row in cells:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        head = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
        print(self.paint(head.rstrip(), "1"))
        for row in cells:
            parts = []
            for i, cell in enumerate(row):
                text = cell.ljust(widths[i]) if i < len(row) - 1 else cell
                if i == status_column:
                    code = (
                        "32"
                        if cell in ("ok", "OK", "pass")
                        else ("33" if cell in ("offline", "skipped", "warn", "discarded") else "31")
                    )
                    text = self.paint(text, code)
                parts.append(text)
            print("  ".join(parts).rstrip())


class Progress:
    """``label [#####.....] n/total`` on a terminal's stderr; silent otherwise."""

    def __init__(self, out: Out, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.enabled = (
            out.verbosity >= 0
            and not out.json
            and bool(getattr(sys.stderr, "isatty", lambda: False)())
        )
        self._shown = 0.0

    def advance(self, step: int = 1) -> None:
        self.done += step
        now = time.monotonic()
        if self.enabled and (now - self._shown > 0.1 or self.done >= self.total):
            self._shown = now
            filled = int(30 * self.done / self.total)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
