"""The five stores of one repository, built under its directories.

:class:`~secure_import.repository.Repository` receives any of them from its
caller (a test double, a shared store) or builds the default here: the
verified-bytes cache, the trust state, the audit log (with its witness kept
apart), the authenticated bytecode and the manifest memo.  A read-only cache
(:attr:`~secure_import.store.paths.Paths.cache_readonly`) makes each store
that writes to it read-only too.
"""

from __future__ import annotations

from collections.abc import Callable

from secure_import.store.audit import AuditLog
from secure_import.store.bytecode import BytecodeStore
from secure_import.store.cache import Cache
from secure_import.store.memo import ManifestMemo
from secure_import.store.paths import Paths
from secure_import.store.state import StateStore

__all__ = ["default_stores"]


def default_stores(
    paths: Paths,
    repo_id: str,
    on_unwritable: Callable[[str], None],
    cache: Cache | None = None,
    state: StateStore | None = None,
    audit: AuditLog | None = None,
    bytecode: BytecodeStore | None = None,
    memo: ManifestMemo | None = None,
) -> tuple[Cache, StateStore, AuditLog, BytecodeStore, ManifestMemo]:
    """``(cache, state, audit, bytecode, memo)``: each one given, else the
    default under ``paths``.  ``on_unwritable`` is told once when the cache
    turns out not to be writable."""
    readonly = paths.cache_readonly
    return (
        Cache(paths.cache, readonly=readonly, on_unwritable=on_unwritable)
        if cache is None
        else cache,
        StateStore(paths.state) if state is None else state,
        AuditLog(paths.audit_log_file, witness=paths.witness_file) if audit is None else audit,
        BytecodeStore(paths.cache, paths.state, readonly=readonly)
        if bytecode is None
        else bytecode,
        ManifestMemo(paths.cache, paths.state, owner=repo_id, readonly=readonly)
        if memo is None
        else memo,
    )
