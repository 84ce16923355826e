"""What the cache says about a repository: its cached manifest, verified or
only read, and what the audit log remembers about it.

:func:`verify_cached` is the check an import makes, from scratch (pinned keys
moved forward through the stored rotations, expiry, high-water mark, lock),
without the network, the memo or any write.  :func:`read_unverified` only
decodes a cached envelope, for *display* and for *conservative* decisions
(which objects another repository may still need); it never makes anything
trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from secure_import.config import MANIFEST_NAME, SIGSTORE_BUNDLE_NAME
from secure_import.errors import SecureImportError
from secure_import.repository import Repository
from secure_import.store.fsutil import read_file
from secure_import.store.paths import Paths
from secure_import.verify import manifest as manifest_mod
from secure_import.verify.manifest import Manifest
from secure_import.verify.trust import HighWater, SigstoreBundle, TrustedManifest
from secure_import.verify.trustset import TrustState

__all__ = ["AuditIndex", "envelope_path", "read_unverified", "verify_cached"]

#: Envelopes larger than this are not even decoded for display.
_MAX_ENVELOPE = 64 * 1024 * 1024


def envelope_path(paths: Paths, repo_id: str) -> Path:
    return paths.cache_dir / "metadata" / repo_id / MANIFEST_NAME


def verify_cached(repository: Repository, envelope: bytes, now: datetime) -> TrustedManifest:
    """Verify a cached envelope as an import would, changing nothing.

    Raises:
        SecureImportError: the check that failed (signature, expiry, rollback, lock...).
    """
    trust = TrustState(
        repository.current_root(),
        high_water=_peek_high_water(repository),
        now=now,
        clock_slack=repository.limits.clock_slack,
        max_version_jump=repository.limits.max_version_jump,
        url=repository.manifest_url,
        locked_digest=repository.locked_digest,
    )
    candidate = trust.verify(envelope, sigstore_bundle=_cached_bundle(repository))
    return trust.accept(candidate).trusted


def read_unverified(envelope: bytes) -> Manifest | None:
    """The manifest an envelope carries, *not verified*; ``None`` if it does
    not decode.  For display and conservative choices only."""
    if len(envelope) > _MAX_ENVELOPE:
        return None
    try:
        document = json.loads(envelope)
        payload = base64.b64decode(document["payload"], validate=True)
        return manifest_mod.parse(payload)
    except (ValueError, KeyError, TypeError, binascii.Error, SecureImportError):
        return None


@dataclass
class AuditIndex:
    """What the audit log remembers: the repository URL of each manifest
    envelope accepted (by its sha256), and when each repository's top-level
    names were last loaded."""

    manifest_urls: dict[str, str] = field(default_factory=dict)
    last_load: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def read(cls, paths: Paths) -> AuditIndex:
        from secure_import.store.auditquery import read_lines

        index = cls()
        if not paths.audit_log.exists():
            return index
        try:
            for _line, record in read_lines(paths.audit_log):
                repo, when = record.get("repo"), record.get("time")
                if not isinstance(repo, str) or not isinstance(when, str):
                    continue
                event = record.get("event")
                digest = record.get("sha256")
                if event == "manifest" and isinstance(digest, str):
                    index.manifest_urls[digest] = repo
                module = record.get("module")
                if event == "load" and isinstance(module, str):
                    key = (repo, module.partition(".")[0])
                    if when > index.last_load.get(key, ""):
                        index.last_load[key] = when
        except OSError:
            pass
        return index

    def url_of(self, envelope: bytes) -> str | None:
        return self.manifest_urls.get(hashlib.sha256(envelope).hexdigest())


def _peek_high_water(repository: Repository) -> HighWater | None:
    """The stored mark, read without creating any state directory."""
    if not (repository.paths.state_dir / "repos" / repository.id / "high-water.json").exists():
        return None
    return repository.state.high_water(repository.id)


def _cached_bundle(repository: Repository) -> SigstoreBundle | None:
    """The cached Sigstore bundle, for a root that pins identities (never the network)."""
    if not repository.pinned_root.identities:
        return None
    url = repository.url_for(SIGSTORE_BUNDLE_NAME)
    path = repository.paths.cache_dir / "metadata" / repository.id / SIGSTORE_BUNDLE_NAME

    def supply() -> tuple[bytes, str] | None:
        data = read_file(path)
        return None if data is None else (data, url)

    return supply
