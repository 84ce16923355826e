"""``secure-import verify``: check a whole repository, locally or over HTTPS.

Unlike the import path, which stops at the first failure, this collects every
failure so a publisher sees the complete picture in one run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secure_import.config import (
    MANIFEST_NAME,
    MANIFEST_PAYLOAD_NAME,
    SIGSTORE_BUNDLE_NAME,
    Limits,
)
from secure_import.errors import FormatError, HTTPStatusError, SecureImportError, TooLargeError
from secure_import.pinning import TrustedRootSpec, pinned_root
from secure_import.store.fsutil import read_file
from secure_import.transport.https import Fetcher
from secure_import.verify.envelope import MANIFEST_PAYLOAD_TYPE, authenticate
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.identity import Identity
from secure_import.verify.keyless import MAX_BUNDLE_BYTES
from secure_import.verify.keys import PublicKey
from secure_import.verify.manifest import Manifest
from secure_import.verify.names import parse_origin
from secure_import.verify.trust import verify_manifest

__all__ = ["VerifyReport", "verify_repository"]


def _check_payload_file(
    read: Callable[[str, int], tuple[bytes, str]], env: bytes, report: VerifyReport
) -> None:
    """The payload file third parties verify with ``sigstore verify`` must be
    exactly what the envelope carries (what consumers verify)."""
    payload = authenticate(env, payload_type=MANIFEST_PAYLOAD_TYPE, keys=()).payload
    try:
        data, url = read(MANIFEST_PAYLOAD_NAME, len(payload) + 1)
    except SecureImportError as exc:
        report.failures.append(exc)
        return
    if data != payload:
        report.failures.append(
            FormatError(
                "the published payload file differs from the manifest envelope's payload",
                check="payload-file",
                url=url,
                expected=f"sha256 {hashlib.sha256(payload).hexdigest()}",
                got=f"sha256 {hashlib.sha256(data).hexdigest()}",
            )
        )


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
    identities: Sequence[Identity] = (),
    sigstore_trusted_root: TrustedRootSpec | None = None,
) -> VerifyReport:
    """Verify the signature, expiry and every file of a repository.

    With ``identities``, the Sigstore bundle published beside the manifest
    counts toward ``threshold`` as it does for consumers, and the payload file
    published for third parties must be byte for byte the envelope's payload.

    Raises:
        ConfigError, KeyFileError: bad pins (before anything is read).
    """
    report = VerifyReport(source)
    limits = Limits()
    root = pinned_root(
        keys=list(keys),
        publishers=list(identities),
        threshold=threshold,
        sigstore_trusted_root=sigstore_trusted_root,
    )
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

            def bundle() -> tuple[bytes, str] | None:
                try:
                    return read(SIGSTORE_BUNDLE_NAME, MAX_BUNDLE_BYTES)
                except HTTPStatusError as exc:
                    if exc.got in (None, 404):
                        return None
                    raise

            trusted = verify_manifest(
                env,
                root=root,
                now=now or datetime.now(UTC),
                high_water=None,
                clock_slack=limits.clock_slack,
                max_version_jump=2**53,
                url=env_url,
                sigstore_bundle=bundle if root.identities else None,
            )
        except SecureImportError as exc:
            report.failures.append(exc)
            return report
        report.manifest = trusted.manifest
        report.key_ids = sorted(trusted.key_ids)
        if root.identities:
            _check_payload_file(read, env, report)
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
