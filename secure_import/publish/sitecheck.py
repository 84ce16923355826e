"""``secure-import verify``: check a whole repository, locally or over HTTPS.

Every artifact a client may fetch is checked as the client would check it:
the signed manifest, every file it lists, the package bundles, the manifest
pointer and the Sigstore bundle (:mod:`secure_import.publish.artifacts`).
Unlike the import path, which stops at the first failure, this collects every
failure so a publisher sees the complete picture in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secure_import.config import (
    MANIFEST_NAME,
    SIGSTORE_BUNDLE_NAME,
    Limits,
)
from secure_import.errors import HTTPStatusError, SecureImportError, TooLargeError
from secure_import.pinning import TrustedRootSpec, pinned_root, sigstore_root
from secure_import.publish.artifacts import (
    Findings,
    check_bundles,
    check_pointer,
    check_sigstore_bundle,
)
from secure_import.store.fsutil import read_file
from secure_import.transport.https import Fetcher
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.identity import Identity
from secure_import.verify.keyless import MAX_BUNDLE_BYTES
from secure_import.verify.keys import PublicKey
from secure_import.verify.manifest import Manifest
from secure_import.verify.names import parse_origin
from secure_import.verify.trust import SIGSTORE_SIGNER, verify_manifest

__all__ = ["VerifyReport", "verify_repository"]


@dataclass
class VerifyReport:
    source: str
    manifest: Manifest | None = None
    key_ids: list[str] = field(default_factory=list)
    checked: int = 0
    failures: list[SecureImportError] = field(default_factory=list)
    #: Package bundles read and checked.
    bundles_checked: int = 0
    #: Worth knowing, nothing broken (an absent pointer or bundle, who
    #: signed the Sigstore bundle).
    notes: list[str] = field(default_factory=list)

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
    """Verify the signature, expiry and every artifact of a repository: each
    listed file, each package bundle, the manifest pointer, the Sigstore bundle.

    With ``identities``, the Sigstore bundle published beside the manifest
    counts toward ``threshold`` as it does for consumers.  A Sigstore bundle,
    when published, must verify (against ``sigstore_trusted_root`` when no
    identity is pinned), and the payload file published for third parties
    must be byte for byte the envelope's payload.

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
        for rel, entry in sorted(trusted.manifest.files.items()):
            report.checked += 1
            try:
                data, url = read(rel, entry.length + 1)
                verify_bytes(data, entry, url=url)
            except SecureImportError as exc:
                report.failures.append(exc)
        found = Findings()
        check_bundles(read, trusted.manifest, found)
        check_pointer(read, env, trusted.manifest, found)
        check_sigstore_bundle(
            read,
            env,
            found,
            root=root,
            trusted_root=lambda: sigstore_root(sigstore_trusted_root),
            counted=any(k.startswith(SIGSTORE_SIGNER) for k in trusted.key_ids),
        )
        report.failures.extend(found.failures)
        report.notes.extend(found.notes)
        report.bundles_checked = found.bundles_checked
        return report
    finally:
        if fetcher is not None:
            fetcher.close()
