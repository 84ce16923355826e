"""Auditing a refused configuration, wherever it was refused.

A refused ``import`` is audited by the repository that refused it; a refused
*configuration* (``add_repo``, ``extend_package``, ``configure``: an http://
URL, an unusable key file, a project file that may not lower freshness...)
happens before any repository exists.  Every such entry point records it
through :func:`audit_refusal`, so an operator reading the log sees every
refusal, not only those raised inside ``import``.
"""

from __future__ import annotations

from secure_import.errors import SecureImportError
from secure_import.store.audit import AuditLog
from secure_import.store.paths import Paths

__all__ = ["audit_refusal"]


def audit_refusal(paths: Paths | None, exc: SecureImportError) -> None:
    """Append a ``refuse`` record for ``exc`` to the audit log of ``paths``
    (``None``: the default directories, as the refused call would have used).

    The caller re-raises ``exc`` afterwards.  If the default directories
    cannot even be worked out, nothing is recorded (the caller's error
    stands); if the record cannot be written, that is reported instead
    (:class:`~secure_import.errors.AuditWriteError`, chained to ``exc``):
    either way the configuration is refused.
    """
    if paths is None:
        try:
            paths = Paths.default()
        except SecureImportError:
            return
    log = AuditLog(paths.audit_log, witness=paths.audit_witness)
    try:
        log.append("refuse", outcome="refused", url=exc.url, code=exc.code, message=str(exc))
    finally:
        log.close()
