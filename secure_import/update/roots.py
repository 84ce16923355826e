"""The root chain of one repository: stored rotations and the server's next roots.

A manifest update (:mod:`secure_import.update`) asks for this when the trust
state cannot verify with the root it holds.  The walk only ever goes forward,
one version at a time, and every step is decided by
:class:`~secure_import.verify.trustset.TrustState` (signed by both the old and
the new keys); this module fetches, stores and audits, nothing more.  It is
apart from the update so that the order of a manifest update reads in one
place and the chain's I/O in another.
"""

from __future__ import annotations

from collections.abc import Callable

from secure_import.config import Limits
from secure_import.errors import HTTPStatusError, SecureImportError
from secure_import.store.state import StateStore
from secure_import.verify.root import ROOTS_DIR
from secure_import.verify.trustset import TrustState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.transport.base import Transport

__all__ = ["RootChain"]


class RootChain:
    """Feeds a trust state the rotations of one repository (stored, then fetched)."""

    def __init__(
        self,
        url_for: Callable[[str], str],
        *,
        repo_id: str,
        limits: Limits,
        state: StateStore,
        transport: Callable[[], Transport],
        record: Callable[..., None],
    ) -> None:
        self._url_for = url_for
        self._repo_id = repo_id
        self._limits = limits
        self._state = state
        self._transport = transport
        self._record = record

    def adopt_stored(self, trust: TrustState) -> None:
        """Feed ``trust`` the rotations stored by earlier processes, in order.

        A stored chain that no longer verifies (edited state, or keys re-pinned
        by the user) is followed only up to the last good link.
        """
        for data in self._state.roots(self._repo_id, after=trust.root.version):
            try:
                trust.update_root(data)
            except SecureImportError:
                break

    def rotate(self, trust: TrustState, *, up_to: int | None, deadline: float | None) -> None:
        """Fetch roots ``trust.root.version + 1, ...`` (bounded), feed them to
        ``trust`` and store each one it accepts.

        Stops at ``up_to``, or at the first version the server does not have.

        Raises:
            RootRotationError: a step is not signed by both old and new keys,
                or skips a version; nothing after the last good step is kept.
        """
        for _ in range(self._limits.max_root_rotations):
            current = trust.root
            if up_to is not None and current.version >= up_to:
                break
            url = self._url_for(f"{ROOTS_DIR}/{current.version + 1}.json")
            try:
                response = self._transport().get(
                    url, cap=self._limits.root_max_bytes, what="trust root", deadline=deadline
                )
            except HTTPStatusError as exc:
                if exc.got == 404:
                    break
                raise
            assert response.body is not None
            new = trust.update_root(response.body, url=url)
            self._state.save_root(self._repo_id, new.version, response.body)
            self._record(
                "rotate",
                outcome="ok",
                url=url,
                manifest_version=new.version,
                key_id=",".join(sorted(k.key_id for k in new.keys)),
                message=f"trust root {current.version} -> {new.version} "
                f"(threshold {new.threshold} of {len(new.keys)} keys)",
            )
