"""Trust state that must outlive the cache: high-water marks and rotated roots.

Kept in the *state* directory, never the cache, so ``secure-import cache
clear`` (or an attacker deleting the cache) cannot reset it (THREATS L2).
Writes are atomic and fsynced: losing a high-water mark would re-open the door
to rollback.

The mark only ever rises, also between processes: :meth:`StateStore.raise_high_water`
is a compare-and-swap under an exclusive lock of the repository's state
directory that re-reads the stored mark under the lock, so a process that
read an old mark before a long network wait can never write it back down
over a newer one another process accepted meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

from secure_import.errors import EquivocationError, LocalStateError, RollbackError
from secure_import.store.fsutil import atomic_write, exclusive_lock, read_file, secure_dir
from secure_import.verify.trust import HighWater

__all__ = ["StateStore", "repo_id"]


def repo_id(base_url: str, *, key_ids: Iterable[str] = ()) -> str:
    """A stable, file-name-safe identifier for a repository: its normalised
    URL and the ids of its pinned keys.  Two repositories at one URL pinned
    to different keys have different state (a project file pinning its own
    keys for a trusted URL cannot move that repository's high-water mark)."""
    text = base_url + "\0" + ",".join(sorted(set(key_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class StateStore:
    """High-water marks, one small JSON file per repository."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    def _path(self, rid: str) -> str:
        directory = secure_dir(os.path.join(self.root, "repos", rid), what="state")
        return os.path.join(directory, "high-water.json")

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
                got=self._path(rid),
            ) from exc

    def roots(self, rid: str, after: int) -> list[bytes]:
        """Stored root envelopes ``after + 1``, ``after + 2``, ... while consecutive.

        They are re-verified link by link by the caller: the state directory
        remembers, it does not vouch.
        """
        directory = os.path.join(self.root, "repos", rid, "roots")
        found: list[bytes] = []
        version = after + 1
        while True:
            data = read_file(os.path.join(directory, f"{version}.json"))
            if data is None:
                return found
            found.append(data)
            version += 1

    def save_root(self, rid: str, version: int, data: bytes) -> None:
        directory = secure_dir(os.path.join(self.root, "repos", rid, "roots"), what="state")
        atomic_write(os.path.join(directory, f"{version}.json"), data, durable=True)

    def raise_high_water(self, rid: str, mark: HighWater, *, url: str | None = None) -> None:
        """Store ``mark`` if it is above the stored one (compare-and-swap).

        Under the repository's lock the stored mark is read again: if another
        process accepted a newer manifest since ours was checked, ours is now
        a rollback and is refused; the same version with another envelope is
        equivocation.  The stored mark is never lowered.

        Raises:
            RollbackError, EquivocationError: as above; nothing was written.
            LocalStateError: the state file is damaged or cannot be locked.
        """
        path = self._path(rid)
        try:
            with exclusive_lock(os.path.join(os.path.dirname(path), "high-water.lock")):
                current = self.high_water(rid)
                if current is not None:
                    if mark.version < current.version:
                        raise RollbackError(
                            "another process accepted a newer manifest meanwhile; this one "
                            "is now older than the high-water mark",
                            check="rollback",
                            url=url,
                            expected=f">= {current.version}",
                            got=mark.version,
                        )
                    if mark.version == current.version:
                        if mark.digest != current.digest:
                            raise EquivocationError(
                                "another process accepted different signed content "
                                "under the same manifest version",
                                check="equivocation",
                                url=url,
                                expected=current.digest,
                                got=mark.digest,
                            )
                        return
                payload = json.dumps({"version": mark.version, "digest": mark.digest}).encode()
                atomic_write(path, payload, durable=True)
        except OSError as exc:
            raise LocalStateError(
                f"cannot update the high-water mark: {exc}", check="state-file", got=str(path)
            ) from exc

    def set_high_water(self, rid: str, mark: HighWater) -> None:
        """:meth:`raise_high_water` (kept for callers that predate it)."""
        self.raise_high_water(rid, mark)
