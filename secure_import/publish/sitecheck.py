"""``secure-import verify``: check a whole repository, locally or over HTTPS.

Unlike the import path, which stops at the first failure, this collects every
failure so a publisher sees the complete picture in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import SecureImportError, TooLargeError
from secure_import.store.fsutil import read_file
from secure_import.transport.https import Fetcher
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.keys import PublicKey
from secure_import.verify.manifest import Manifest
from secure_import.verify.names import parse_origin
from secure_import.verify.root import Root
from secure_import.verify.trust import verify_manifest

__all__ = ["VerifyReport", "verify_repository"]


@dataclass
class VerifyReport:
    source: str
    manifest: Manifest | None = None
    key_ids: list[str] = field(default_factory=list)
    checked: int = 0
    failures: list[SecureImportError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.failures


def verify_repository(
    source: str,
    *,
    keys: Sequence[PublicKey],
    threshold: int = 1,
    ca_bundle: str | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Verify the signature, expiry and every file of a repository."""
    report = VerifyReport(source)
    limits = Limits()
    root = Root.from_keys(list(keys), threshold)
    fetcher: Fetcher | None = None
    base: str
    if source.startswith(("https://", "http://")):
        parse_origin(source)  # refuses http:// before any request
        base = source if source.endswith("/") else source + "/"
        fetcher = Fetcher(base, limits=limits, ca_bundle=ca_bundle)
    else:
        base = str(Path(source))

    def read(rel: str, cap: int) -> tuple[bytes, str]:
        if fetcher is not None:
            url = base + rel
            try:
                response = fetcher.get(url, cap=cap, what=rel)
            except TooLargeError:
                raise
            assert response.body is not None
            return response.body, url
        path = Path(base) / rel
        data = read_file(path)
        if data is None:
            from secure_import.errors import HTTPStatusError

            raise HTTPStatusError("file missing", check="exists", url=str(path))
        if len(data) > cap:
            raise TooLargeError(
                "file larger than allowed",
                check="size",
                url=str(path),
                expected=f"<= {cap} bytes",
                got=f"{len(data)} bytes",
            )
        return data, str(path)

    try:
        try:
            env, env_url = read(MANIFEST_NAME, limits.manifest_max_bytes)
            trusted = verify_manifest(
                env,
                root=root,
                now=now or datetime.now(UTC),
                high_water=None,
                clock_slack=limits.clock_slack,
                max_version_jump=2**53,
                url=env_url,
            )
        except SecureImportError as exc:
            report.failures.append(exc)
            return report
        report.manifest = trusted.manifest
        report.key_ids = sorted(trusted.key_ids)
        for rel, entry in sorted(trusted.manifest.files.items()):
            report.checked += 1
            try:
                data, url = read(rel, entry.length + 1)
                verify_bytes(data, entry, url=url)
            except SecureImportError as exc:
                report.failures.append(exc)
        return report
    finally:
        if fetcher is not None:
            fetcher.close()
