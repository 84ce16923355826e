"""Memo of authenticated manifests: the signature check and parse, once per envelope.

Verifying a manifest's signatures and parsing it with every safety rule costs
milliseconds for a repository of a few hundred files, in every process that
imports from it, although the envelope on disk rarely changes.  The result of
:func:`secure_import.verify.trust.authenticate_manifest` for one envelope under one
trust root is a pure function of those two, so it is kept as a sealed file
(:mod:`secure_import.store.sealed`): later processes that hold the very same envelope
bytes and the very same root reuse it instead of verifying again.

Invariants:

- the memo is bound to the envelope's sha256, the root that authenticated it
  (version, threshold, every key's raw bytes, every pinned Sigstore identity
  and the sha256 of the pinned Sigstore trusted root), the parser's rules
  (:data:`secure_import.verify.manifest.PARSE_RULES`) and this format.  Re-pinning
  keys, rotating the root, a new parser or a single changed envelope byte is
  another binding, so the memo is not used and the envelope is verified from
  scratch;
- it replaces only authentication.  Every decision that depends on time or on
  local state (root version, lock, expiry, rollback, equivocation,
  fast-forward, root expiry) is taken again in every process by
  :func:`secure_import.verify.trust.check_manifest`;
- a memo is written only after a full verification succeeded in this process
  and the manifest was accepted;
  a memo that fails its HMAC is deleted and never parsed.  Only whoever can
  write the state directory (the sealing key) could forge one, and they can
  already pin a root of their own there.
"""

from __future__ import annotations

import marshal
import os

from secure_import.errors import FormatError
from secure_import.store.sealed import SealedStore, binding, digest_name
from secure_import.verify import manifest
from secure_import.verify.manifest import Manifest
from secure_import.verify.root import Root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MEMO_DIR", "ManifestMemo"]

#: Folder of memo files inside the cache directory.
MEMO_DIR = "verified"
_FORMAT = b"SIMM\x02"


class ManifestMemo:
    """Sealed results of authenticating one repository's manifest envelopes.

    ``owner`` (the repository id) prefixes the file names, so accepting a new
    manifest replaces the memo of the previous one instead of piling up.
    Never raises.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        owner: str,
        readonly: bool = False,
    ) -> None:
        self._sealed = SealedStore(
            os.path.join(cache_dir, MEMO_DIR),
            cache_dir=cache_dir,
            state_dir=state_dir,
            readonly=readonly,
        )
        self._prefix = f"manifest-{owner}-"

    def name_for(self, root: Root, digest: str) -> str:
        """File name of the memo for envelope ``digest`` under ``root``."""
        return digest_name(self._prefix, _binding(root, digest))

    def load(self, root: Root, digest: str) -> tuple[Manifest, frozenset[str]] | None:
        """The manifest and signing key ids for envelope ``digest`` under ``root``."""
        bound = _binding(root, digest)
        name = digest_name(self._prefix, bound)
        body = self._sealed.open(name, bound)
        if body is None:
            return None
        try:
            plain, key_ids = marshal.loads(body)  # noqa: S302 - HMAC checked above
            return manifest.from_plain(plain), frozenset(key_ids)
        except (ValueError, EOFError, TypeError, OverflowError, OSError, FormatError):
            self._sealed.discard(name)
            return None

    def check(
        self, root: Root, digest: str, expected: Manifest, key_ids: frozenset[str]
    ) -> str | None:
        """What is wrong with the memo for envelope ``digest`` under ``root``
        (``"missing"`` if none), compared with the manifest just verified from
        the envelope itself; deletes nothing (``secure-import cache verify``)."""
        bound = _binding(root, digest)
        body, problem = self._sealed.check(digest_name(self._prefix, bound), bound)
        if body is None:
            return problem
        try:
            plain, ids = marshal.loads(body)  # noqa: S302 - HMAC checked above
            remembered = manifest.from_plain(plain)
        except (ValueError, EOFError, TypeError, OverflowError, OSError, FormatError):
            return "sealed memo does not parse"
        if manifest.to_plain(remembered) != manifest.to_plain(expected):
            return "memo differs from the manifest the envelope holds"
        if frozenset(ids) != key_ids:
            return "memo names other signing keys than the envelope's signatures"
        return None

    def names(self) -> list[str]:
        """File names of this repository's memos."""
        return self._sealed.names(self._prefix)

    @property
    def directory(self) -> Path:
        return self._sealed.directory

    def save(self, root: Root, digest: str, parsed: Manifest, key_ids: frozenset[str]) -> None:
        """Remember that envelope ``digest`` authenticated under ``root`` as
        ``parsed`` (call only once the manifest was accepted), replacing this
        repository's earlier memos."""
        bound = _binding(root, digest)
        name = digest_name(self._prefix, bound)
        try:
            body = marshal.dumps((manifest.to_plain(parsed), tuple(sorted(key_ids))))
        except ValueError:
            return
        if self._sealed.seal(name, bound, body):
            for old in self._sealed.names(self._prefix):
                if old != name:
                    self._sealed.discard(old)


def _binding(root: Root, digest: str) -> bytes:
    return binding(
        [
            _FORMAT,
            str(marshal.version).encode(),
            str(manifest.PARSE_RULES).encode(),
            str(root.version).encode(),
            str(root.threshold).encode(),
            *(key.raw for key in root.keys),
            # Sigstore identities and their trusted root: another pin, another memo.
            *(repr(sorted(pin.as_dict().items())).encode() for pin in root.identities),
            b"" if root.sigstore_root is None else root.sigstore_root.sha256.encode(),
            digest.encode(),
        ]
    )
