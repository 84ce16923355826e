"""The audit log, also as stdlib ``logging`` records (logger ``secure_import.audit``).

The hash-chained file stays the record of truth; this bridge lets operators
forward the same events with the handlers they already run (syslog, journald,
OpenTelemetry, a JSON formatter) without tailing a file::

    import logging
    logging.getLogger("secure_import.audit").addHandler(logging.handlers.SysLogHandler())

One :class:`logging.LogRecord` per audit record, emitted by
:meth:`secure_import.store.audit.AuditLog.append` after the record was written:

- level ``INFO`` for an ordinary outcome (``ok``), ``WARNING`` for anything
  else (``refused``, ``offline``, ``discarded``, ...);
- the message is a short human line; the whole audit record is attached as
  ``record.secure_import`` and each field also as ``record.audit_<field>``
  (``extra``), so a structured formatter needs no parsing;
- the logger does not propagate to the root logger: audit events appear only
  where an operator sends them, never mixed into an application's console
  output by a ``basicConfig`` call.  Set ``propagate = True`` on
  ``secure_import.store.logbridge.logger`` (reading it sets the logger up
  first) to change that.

``logging`` is imported only when something could be listening: while it is
not in ``sys.modules`` no handler can exist, so a process that never
configures logging never imports it.  The logger is set up (above) the first
time it is needed: when :data:`logger` is read, when a record is forwarded
while ``logging`` is loaded, or at once if ``logging`` was loaded before this
module.

Audit records contain no secrets (names, URLs, digests, versions, codes), so
nothing here needs scrubbing.  A failing handler never affects an import:
``logging`` reports handler errors itself and the file log has already been
written.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    #: The ``secure_import.audit`` logger (set up when first read).
    logger: logging.Logger

__all__ = ["LOGGER_NAME", "emit", "listening", "logger"]

LOGGER_NAME = "secure_import.audit"

_QUIET_OUTCOMES = frozenset({"ok"})

#: The configured logger and its NullHandler, once :func:`_setup` ran.
_state: tuple[logging.Logger, logging.Handler] | None = None


def _setup() -> tuple[logging.Logger, logging.Handler]:
    global _state
    if _state is None:
        import logging

        audit_logger = logging.getLogger(LOGGER_NAME)
        audit_logger.propagate = False
        # INFO by default so that adding a handler is all an operator does; the
        # NullHandler keeps ``logging``'s last-resort stderr handler out of it.
        if audit_logger.level == logging.NOTSET:
            audit_logger.setLevel(logging.INFO)
        null = logging.NullHandler()
        audit_logger.addHandler(null)
        _state = (audit_logger, null)
    return _state


def __getattr__(name: str) -> logging.Logger:
    """``logger``: the ``secure_import.audit`` logger, set up on first use."""
    if name == "logger":
        return _setup()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "logging" in sys.modules:
    _setup()


def listening() -> bool:
    """Whether a record could reach any handler (False in the common case,
    so callers can skip building a record only ``logging`` would read)."""
    if _state is None:
        if "logging" not in sys.modules:
            return False  # no handler can exist without logging
        _setup()
    assert _state is not None
    audit_logger, null = _state
    if audit_logger.propagate:
        return True
    handlers = audit_logger.handlers
    return bool(handlers) and not (len(handlers) == 1 and handlers[0] is null)


def emit(record: Mapping[str, object]) -> None:
    """Forward one audit record (already written to the file) to ``logging``."""
    if not listening():
        return  # nobody listens: the common case costs two attribute reads
    import logging

    audit_logger = _setup()[0]
    outcome = str(record.get("outcome", ""))
    level = logging.INFO if outcome in _QUIET_OUTCOMES else logging.WARNING
    if not audit_logger.isEnabledFor(level):
        return
    parts = [f"{record.get('event', '?')} {outcome}"]
    for key in ("module", "code", "url"):
        value = record.get(key)
        if value:
            parts.append(f"{key}={value}")
    extra: dict[str, object] = {f"audit_{key}": value for key, value in record.items()}
    extra["secure_import"] = dict(record)
    try:
        audit_logger.log(level, " ".join(parts), extra=extra)
    except Exception as exc:  # noqa: BLE001 - a broken filter must not undo a written record
        sys.stderr.write(f"secure_import: forwarding an audit record to logging failed: {exc!r}\n")
