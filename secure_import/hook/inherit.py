"""Child interpreters inherit the parent's repositories.

:func:`export` is called whenever ``add_repo``, ``remove_repo``,
``configure`` or ``secure-import run`` change the installed repositories: it
seals a description of them in the state directory
(:mod:`secure_import.store.childdesc`) and sets ``$SECURE_IMPORT_CHILD`` to
its id, so ``subprocess`` children started with ``sys.executable`` and
``multiprocessing`` children (``spawn``, ``forkserver``) inherit it.  ``fork``
children simply keep the parent's finder.

:func:`start` is the start-up hook: the ``secure_import-children.pth`` file
shipped in the wheel calls it in every interpreter of the environment where
the variable is set (one dictionary lookup when it is not).  It verifies the
description (see :mod:`~secure_import.store.childdesc` for why the variable
cannot add keys or loosen policy), installs the same repositories, and audits
the outcome; a refused description installs nothing, is audited
(``child-config`` / ``refused``) and warned about on stderr, so remote
imports in that child fail closed (``ModuleNotFoundError``).

Not inherited (stated in the documentation): repositories pinned to Sigstore
identities or served from ``s3://``, and repositories whose credential was
handed over as a value rather than named by an environment variable or file
(a secret is never written to disk).
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from datetime import timedelta

from secure_import.config import Limits
from secure_import.errors import ChildConfigError, SecureImportError
from secure_import.hook.finder import get_finder
from secure_import.repository import Repository
from secure_import.store import childdesc
from secure_import.store.audit import AuditLog
from secure_import.store.childdesc import (
    ENV_VAR,
    AuthSource,
    ChildDescription,
    RepositoryDescription,
)
from secure_import.store.paths import Paths, default_dir
from secure_import.verify.keys import PublicKey

# export() runs in every process that calls add_repo: the HTTP transport
# module (httpx, ssl) and pathlib are imported only by a child rebuilding
# repositories that need them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.transport.https import TransportOptions

__all__ = ["ENV_VAR", "describe", "export", "start"]

#: The id this process wrote (``None`` until it exported something).
_own: str | None = None
_own_dir: str | None = None
#: Whether :func:`start` already ran in this interpreter.
_started = False


def _anchor() -> str:
    """The state directory descriptions live in: the one the environment and
    platform defaults name, computed alike in parent and child."""
    return default_dir("state")


# --- parent side -------------------------------------------------------------------


def _limits(limits: Limits) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in limits._fields:
        value = getattr(limits, name)
        if isinstance(value, timedelta):
            out[name] = round(value.total_seconds() * 1_000_000)
        elif isinstance(value, float):
            out[name] = round(value * 1_000_000)
        else:
            out[name] = int(value)
    return out


def _auth(transport: TransportOptions | None) -> tuple[bool, AuthSource | None]:
    """(exportable, where the credential comes from)."""
    if transport is None or transport.auth is None:
        return True, None
    auth = transport.auth
    origin = getattr(auth, "reload", None)
    if origin is None:
        return False, None
    kind, where, scheme = origin
    return True, AuthSource(kind=kind, where=where, header=auth.name, scheme=scheme)


def describe(repo: Repository) -> RepositoryDescription | None:
    """What a child needs to rebuild ``repo``; ``None`` if it cannot be inherited."""
    root = repo.pinned_root
    if not getattr(repo, "inheritable", True):
        return None
    if root.identities or repo.url.startswith("s3://") or repo.url.startswith("s3:"):
        return None
    if getattr(repo, "_s3", None) is not None:
        return None
    ok, auth = _auth(repo.transport)
    if not ok:
        return None
    transport = repo.transport
    materialise = repo.materialise
    return RepositoryDescription(
        url=repo.url,
        keys=tuple(k.raw.hex() for k in root.keys),
        threshold=root.threshold,
        root_version=root.version,
        modules=None if repo.modules is None else tuple(sorted(repo.modules)),
        ca_bundle=repo.ca_file,
        offline=repo.offline,
        lock_file=repo.lock_path,
        materialise=materialise if isinstance(materialise, bool) else tuple(sorted(materialise)),
        cache_dir=repo.paths.cache,
        state_dir=repo.paths.state,
        log_dir=repo.paths.log,
        limits=_limits(repo.limits),
        auth=auth,
        client_cert=None
        if transport is None or transport.client_cert is None
        else os.fspath(transport.client_cert),
        client_key=None
        if transport is None or transport.client_key is None
        else os.fspath(transport.client_key),
        truststore=transport is not None and transport.use_truststore,
        mirrors=repo.mirrors,
        fallback=repo.fallback,
    )


def export() -> str | None:
    """Seal the installed repositories for child interpreters and name them in
    ``$SECURE_IMPORT_CHILD``; return the id (``None``: nothing to inherit, the
    variable is removed).  Never raises: a description that cannot be written
    warns and leaves children without repositories (they fail closed)."""
    global _own, _own_dir
    described = [d for d in map(describe, get_finder().repositories) if d is not None]
    anchor = _anchor()
    if not described:
        if _own is not None and os.environ.get(ENV_VAR) == _own:
            del os.environ[ENV_VAR]
        if _own is not None and _own_dir is not None:
            childdesc.remove(_own_dir, _own)
        return None
    if _own is None or _own_dir != anchor or not _own.startswith(f"{os.getpid()}-"):
        _own, _own_dir = childdesc.new_id(), anchor
        atexit.register(_cleanup, os.getpid(), _own, anchor)
    description = ChildDescription(
        created=int(time.time()), pid=os.getpid(), repositories=tuple(described)
    )
    try:
        childdesc.write(anchor, _own, description)
    except ChildConfigError as exc:
        print(
            f"secure_import: child interpreters will not inherit repositories: {exc}",
            file=sys.stderr,
        )
        return None
    childdesc.prune(anchor, keep=[_own])
    os.environ[ENV_VAR] = _own
    return _own


def _cleanup(pid: int, ident: str, anchor: str) -> None:
    if os.getpid() == pid:  # not in a forked child that runs atexit
        childdesc.remove(anchor, ident)


# --- child side ----------------------------------------------------------------------


def _rebuild(item: RepositoryDescription) -> Repository:
    defaults = Limits()
    values: dict[str, object] = {}
    for name in Limits._fields:
        if name not in item.limits:
            continue
        raw = item.limits[name]
        default = getattr(defaults, name)
        if isinstance(default, timedelta):
            values[name] = timedelta(microseconds=raw)
        elif isinstance(default, float):
            values[name] = raw / 1_000_000
        else:
            values[name] = raw
    from pathlib import Path

    from secure_import.transport.https import AuthHeader, TransportOptions

    auth = None
    if item.auth is not None:
        if item.auth.kind == "env":
            auth = AuthHeader.from_env(
                item.auth.where, header=item.auth.header, scheme=item.auth.scheme
            )
        else:
            auth = AuthHeader.from_file(
                item.auth.where, header=item.auth.header, scheme=item.auth.scheme
            )
    transport = TransportOptions(
        auth=auth,
        client_cert=None if item.client_cert is None else Path(item.client_cert),
        client_key=None if item.client_key is None else Path(item.client_key),
        use_truststore=item.truststore,
    )
    repo = Repository(
        item.url,
        keys=[PublicKey(bytes.fromhex(k)) for k in item.keys],
        threshold=item.threshold,
        root_version=item.root_version,
        modules=item.modules,
        ca_bundle=item.ca_bundle,
        paths=Paths(
            cache_dir=Path(item.cache_dir),
            state_dir=Path(item.state_dir),
            log_dir=Path(item.log_dir),
        ),
        limits=Limits(**values),  # type: ignore[arg-type]
        offline=item.offline,
        lock=item.lock_file,
        transport=None if transport.is_default else transport,
        materialise=item.materialise,
        mirrors=item.mirrors,
        fallback=item.fallback,
    )
    repo.inherited = True  # type: ignore[attr-defined]
    return repo


def install(value: str) -> list[Repository]:
    """Verify the description ``value`` names and install its repositories.

    Raises:
        ChildConfigError: the description was refused (nothing installed).
        SecureImportError: a repository could not be rebuilt (nothing installed).
    """
    anchor = _anchor()
    description = childdesc.read(anchor, value)
    built: list[Repository] = []
    try:
        for item in description.repositories:
            built.append(_rebuild(item))
    except BaseException:
        for repo in built:
            repo.close()
        raise
    finder = get_finder()
    for repo in built:
        finder.add(repo)
    AuditLog(Paths.default().audit_log_file).append(
        "child-config",
        outcome="ok",
        message=f"inherited {len(built)} repositories from process {description.pid} "
        f"(description {value})",
    )
    return built


def start() -> None:
    """The start-up hook (``.pth``): install what ``$SECURE_IMPORT_CHILD``
    names, or refuse, audit and warn.  Never raises: interpreter start-up
    must go on, and without repositories every remote import fails closed."""
    global _started
    value = os.environ.get(ENV_VAR)
    if not value or _started:
        # Once per interpreter: a venv's site-packages can be reached twice
        # (lib and a lib64 symlink), and site runs the .pth line for each.
        return
    _started = True
    try:
        install(value)
    except SecureImportError as exc:
        try:
            AuditLog(Paths.default().audit_log_file).append(
                "child-config",
                outcome="refused",
                code=exc.code,
                url=exc.url,
                message=f"${ENV_VAR}={value!r}: {exc}",
            )
        except SecureImportError as audit_exc:
            print(f"secure_import: cannot audit the refusal: {audit_exc}", file=sys.stderr)
        print(
            f"secure_import: ignored ${ENV_VAR} (audited): {exc}",
            file=sys.stderr,
        )
    except Exception as exc:  # noqa: BLE001 - never break interpreter start-up
        print(f"secure_import: ignored ${ENV_VAR}: {exc!r}", file=sys.stderr)
