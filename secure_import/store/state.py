"""Trust state that must outlive the cache: high-water marks and rotated roots.

Kept in the *state* directory, never the cache, so ``secure-import cache
clear`` (or an attacker deleting the cache) cannot reset it (THREATS L2).
Writes are atomic and fsynced: losing a high-water mark would re-open the door
to rollback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from secure_import.errors import LocalStateError
from secure_import.store.fsutil import atomic_write, read_file, secure_dir
from secure_import.verify.trust import HighWater

__all__ = ["StateStore", "repo_id"]


def repo_id(base_url: str) -> str:
    """A stable, file-name-safe identifier for a repository URL."""
    return hashlib.sha256(base_url.encode()).hexdigest()[:32]


class StateStore:
    """High-water marks, one small JSON file per repository."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, rid: str) -> Path:
        return secure_dir(self.root / "repos" / rid, what="state") / "high-water.json"

    def high_water(self, rid: str) -> HighWater | None:
        secure_dir(self.root, what="state")
        data = read_file(self._path(rid))
        if data is None:
            return None
        try:
            value = json.loads(data)
            return HighWater(version=int(value["version"]), digest=str(value["digest"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalStateError(
                "the trust state file is damaged; refusing to guess the high-water mark",
                check="state-file",
                got=str(self._path(rid)),
            ) from exc

    def roots(self, rid: str, after: int) -> list[bytes]:
        """Stored root envelopes ``after + 1``, ``after + 2``, ... while consecutive.

        They are re-verified link by link by the caller: the state directory
        remembers, it does not vouch.
        """
        directory = self.root / "repos" / rid / "roots"
        found: list[bytes] = []
        version = after + 1
        while True:
            data = read_file(directory / f"{version}.json")
            if data is None:
                return found
            found.append(data)
            version += 1

    def save_root(self, rid: str, version: int, data: bytes) -> None:
        directory = secure_dir(self.root / "repos" / rid / "roots", what="state")
        atomic_write(directory / f"{version}.json", data, durable=True)

    def set_high_water(self, rid: str, mark: HighWater) -> None:
        secure_dir(self.root, what="state")
        payload = json.dumps({"version": mark.version, "digest": mark.digest}).encode()
        atomic_write(self._path(rid), payload, durable=True)
