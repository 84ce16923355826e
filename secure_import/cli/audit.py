"""``secure-import audit``: show, filter, verify and export the audit log."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from secure_import.cli.common import _paths
from secure_import.cli.output import EXIT_FAIL, EXIT_OK, Out, UsageError

if TYPE_CHECKING:
    from secure_import.store.auditquery import AuditFilter


def _audit_filter(args: argparse.Namespace) -> AuditFilter:
    from secure_import.store.auditquery import AuditFilter, parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return AuditFilter(
        since=since,
        until=until,
        modules=args.module or (),
        repos=args.repo or (),
        outcomes=args.outcome or (),
        events=args.event or (),
        hosts=args.host or (),
    )


def cmd_audit(args: argparse.Namespace, out: Out) -> int:
    from secure_import.store.audit import verify_chain
    from secure_import.store.auditquery import read_lines

    paths = _paths(args, out)
    path = paths.audit_log
    if args.audit_command == "verify":
        report = verify_chain(path, witness=paths.witness)
        if out.json:
            out.emit(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "broken_at_line": report.broken_at,
                    "reason": report.reason,
                    "restarts": list(report.restarts),
                    "repairs": list(report.repairs),
                }
            )
        elif report.ok and report.restarts:
            # Intact from its start, but that start is a restart: say so,
            # never just "intact" (THREATS H7).
            out.result(
                out.paint(
                    f"audit log RESTARTED: {report.records} records intact since the "
                    f"restart, but earlier records are not in this file ({path})",
                    "33",
                )
            )
            for item in report.restarts:
                out.result(f"  {item}")
        elif report.ok:
            out.result(f"audit log intact: {report.records} records ({path})")
        else:
            out.result(
                out.paint(
                    f"audit log BROKEN at line {report.broken_at}: {report.reason} ({path})", "31"
                )
            )
        for item in report.repairs:
            out.note(f"  repaired: {item}")
        return EXIT_OK if report.ok else EXIT_FAIL
    selected = _audit_filter(args)
    rows = [(line, record) for line, record in read_lines(path) if selected.matches(record)]
    if args.audit_command == "export":
        return _audit_export(args, out, rows)
    if args.limit is not None:
        rows = rows[-args.limit :] if args.limit > 0 else []
    records = [record for _, record in rows]
    if out.json:
        out.emit(records)
        return EXIT_OK
    out.note(f"audit log: {path}")
    if records:
        out.table(
            ["time", "event", "outcome", "module", "host", "code", "url"],
            [
                (
                    r.get("time", "?"),
                    r.get("event", "?"),
                    r.get("outcome", ""),
                    r.get("module") or "-",
                    r.get("host") or "",
                    r.get("code") or "",
                    r.get("url") or r.get("repo") or "",
                )
                for r in records
            ],
            status_column=2,
        )
    out.note(f"{len(records)} records")
    return EXIT_OK


def _audit_export(
    args: argparse.Namespace, out: Out, rows: list[tuple[bytes, dict[str, object]]]
) -> int:
    data = b"".join(line + b"\n" for line, _ in rows)
    if args.output in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        out.info(f"exported {len(rows)} records")
        return EXIT_OK
    target = Path(args.output)
    try:
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        from secure_import.errors import LocalStateError

        raise LocalStateError(
            f"cannot write the export file: {exc.strerror or exc}", check="export", got=str(target)
        ) from exc
    if out.json:
        out.emit({"ok": True, "exported": len(rows), "output": str(target)})
    else:
        out.result(f"exported {len(rows)} records to {target}")
    return EXIT_OK
