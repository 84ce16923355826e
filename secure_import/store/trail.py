"""The audit records one repository writes: loads, refusals and notes.

Each record names the repository; a load record names the manifest version
and key that vouched for the module and the host that served its bytes.
Every method raises :class:`~secure_import.errors.AuditWriteError` when the
log cannot be written, so an import whose load cannot be audited fails
closed (THREATS L7).
"""

from __future__ import annotations

from collections.abc import Callable

from secure_import.errors import SecureImportError
from secure_import.store.audit import AuditLog
from secure_import.verify.trust import TrustedManifest

__all__ = ["AuditTrail"]


class AuditTrail:
    """The audit records of the repository at ``url`` (its log is read
    through ``audit`` at each record, so a store replaced later is used)."""

    def __init__(self, audit: Callable[[], AuditLog], url: str, cache_dir: str) -> None:
        self._audit = audit
        self.url = url
        self._cache_dir = cache_dir

    def record(self, event: str, *, outcome: str, **fields: object) -> None:
        """Append an audit record about this repository."""
        self._audit().append(event, outcome=outcome, repo=self.url, **fields)

    def cache_unwritable(self, reason: str) -> None:
        """The cache could not be written (a read-only image layer): not an
        import failure, the verified bytes are used from memory; audited
        once per process."""
        self.record(
            "cache-readonly",
            outcome="skipped",
            url=self.url,
            code="cache-readonly",
            message=f"the cache {self._cache_dir} is not written ({reason}); "
            "verified bytes are used from memory, nothing unverified is trusted",
        )

    def load(
        self,
        *,
        module: str,
        url: str,
        sha256: str,
        trusted: TrustedManifest,
        host: str,
        via: str | None = None,
    ) -> None:
        """One module about to run, served by ``host``; ``via``: the dependency
        declaration that allowed the load (named in the record)."""
        if via is not None:
            self._audit().append(
                "load",
                outcome="ok",
                module=module,
                url=url,
                sha256=sha256,
                repo=self.url,
                manifest_version=trusted.manifest.version,
                key_id=trusted.key_id_text,
                host=host,
                via=via,
            )
            return
        self._audit().append_load(
            module=module,
            url=url,
            sha256=sha256,
            repo=self.url,
            manifest_version=trusted.manifest.version,
            key_id=trusted.key_id_text,
            host=host,
        )

    def refusal(self, exc: SecureImportError, *, module: str | None) -> None:
        """A refused import or configuration, with its code and message."""
        self.record(
            "refuse",
            outcome="refused",
            module=module,
            url=exc.url,
            code=exc.code,
            message=str(exc),
        )
