"""Child descriptions: the parent's repositories, sealed in the state directory,
for child interpreters to install at start-up.

A process that configured repositories (``add_repo``, ``configure``,
``secure-import run``) writes one description file and sets
:data:`ENV_VAR` to its *id*.  A child interpreter started from that
environment (``subprocess`` with ``sys.executable``, ``multiprocessing``
with ``spawn`` or ``forkserver``) runs the start-up hook shipped in the wheel,
which reads the id, finds the file and installs the same repositories: the
same URLs, pinned keys, threshold, allowed modules, lock digest, limits,
offline and materialise modes and directories.

Why the environment variable cannot be a way in (THREATS H10):

- it carries an id, never a path or any setting: ``<pid>-<32 hex digits>``,
  matched in full.  The file is looked up in the ``children`` folder of the
  state directory the child itself would use (``SECURE_IMPORT_STATE_DIR``,
  systemd's ``$STATE_DIRECTORY``, site mode or platformdirs): the variable
  cannot point anywhere else;
- the folder and the file must be ours and private (:func:`secure_dir`; the
  file a regular file, not a symlink, owned by us, mode ``0600``);
- the file is sealed (:mod:`secure_import.store.sealed`): HMAC-SHA256 under
  the state directory's secret key, bound to that state directory's path and
  to this format, checked before a byte is parsed.  Only a process that holds
  the key -- our code, run by this user with this state directory -- can
  write one a child accepts.  Whoever can write the state directory can
  already pin their own roots there; nobody else can forge or edit one;
- the body is parsed strictly (:func:`~secure_import.verify.strictjson.loads`:
  no unknown fields, exact types) and every repository is rebuilt through the
  same constructor ``add_repo`` uses, so it passes the same checks (https
  only, pinned keys, names never served remotely);
- credentials are never written: a repository's credential is named by its
  environment variable or file and read again by the child.

Everything here raises :class:`~secure_import.errors.ChildConfigError` with a
``check`` naming the step that refused.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Mapping, Sequence

from secure_import._frozen import Frozen
from secure_import.errors import ChildConfigError, SecureImportError
from secure_import.store.fsutil import secure_dir
from secure_import.store.sealed import SealedStore, binding
from secure_import.verify.strictjson import dumps_canonical, loads

# add_repo writes a description in every process (it is on the start-up
# path): the records are Frozen rather than dataclasses, and directories are
# strings, so neither dataclasses/inspect nor pathlib is imported for it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

__all__ = [
    "ENV_VAR",
    "FORMAT",
    "AuthSource",
    "ChildDescription",
    "RepositoryDescription",
    "decode",
    "encode",
    "new_id",
    "prune",
    "read",
    "remove",
    "write",
]

#: The environment variable that names a description (its id only).
ENV_VAR = "SECURE_IMPORT_CHILD"
#: ``format`` field of version 1 of the description.
FORMAT = "secure-import-child/1"
#: Folder of descriptions inside the state directory.
FOLDER = "children"
_ID = re.compile(r"[1-9][0-9]{0,9}-[0-9a-f]{32}")
_MAX_BYTES = 1024 * 1024
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: A description whose writer is gone is deleted once this old (seconds).
STALE_AFTER = 3600.0

_TOP_FIELDS = frozenset({"format", "created", "pid", "repositories"})


class AuthSource(Frozen):
    """Where a repository's credential is read from (never the credential)."""

    _fields = ("kind", "where", "header", "scheme")
    __slots__ = _fields

    kind: str  # "env" | "file"
    where: str
    header: str
    scheme: str | None

    def __init__(self, *, kind: str, where: str, header: str, scheme: str | None) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "header", header)
        object.__setattr__(self, "scheme", scheme)


class RepositoryDescription(Frozen):
    """One repository as the parent configured it."""

    _fields = (
        "url",
        "keys",
        "threshold",
        "root_version",
        "modules",
        "ca_bundle",
        "offline",
        "lock_file",
        "materialise",
        "cache_dir",
        "state_dir",
        "log_dir",
        "limits",
        "auth",
        "client_cert",
        "client_key",
        "truststore",
        "mirrors",
        "fallback",
    )
    __slots__ = _fields
    #: A mapping is not hashable (as ``field(hash=False)`` for a dataclass).
    _unhashed = frozenset({"limits"})

    url: str
    #: Pinned public keys, 32 raw bytes each, as lowercase hex.
    keys: tuple[str, ...]
    threshold: int
    root_version: int
    modules: tuple[str, ...] | None
    ca_bundle: str | None
    offline: bool
    lock_file: str | None
    materialise: bool | tuple[str, ...]
    cache_dir: str
    state_dir: str
    log_dir: str
    #: :class:`~secure_import.config.Limits` fields; durations in microseconds.
    limits: Mapping[str, int]
    auth: AuthSource | None
    client_cert: str | None
    client_key: str | None
    truststore: bool
    #: The repository's mirrors and failover policy (verified in the child
    #: exactly as in the parent: a mirror is transport, never trust).
    mirrors: tuple[str, ...]
    fallback: str

    def __init__(
        self,
        *,
        url: str,
        keys: tuple[str, ...],
        threshold: int,
        root_version: int,
        modules: tuple[str, ...] | None,
        ca_bundle: str | None,
        offline: bool,
        lock_file: str | None,
        materialise: bool | tuple[str, ...],
        cache_dir: str,
        state_dir: str,
        log_dir: str,
        limits: Mapping[str, int] | None = None,
        auth: AuthSource | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        truststore: bool = False,
        mirrors: tuple[str, ...] = (),
        fallback: str = "on-error",
    ) -> None:
        given = dict(locals())
        given["limits"] = {} if limits is None else limits
        for name in self._fields:
            object.__setattr__(self, name, given[name])


# What a description may hold: exactly the records' fields, nothing else.
_REPO_FIELDS = frozenset(RepositoryDescription._fields)
_AUTH_FIELDS = frozenset(AuthSource._fields)


class ChildDescription(Frozen):
    """The parent's inheritable repositories, when and by which process."""

    _fields = ("created", "pid", "repositories")
    __slots__ = _fields

    created: int
    pid: int
    repositories: tuple[RepositoryDescription, ...]

    def __init__(
        self, *, created: int, pid: int, repositories: tuple[RepositoryDescription, ...]
    ) -> None:
        object.__setattr__(self, "created", created)
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "repositories", repositories)


def new_id() -> str:
    """A fresh description id for this process (128 random bits from the
    operating system's generator, as ``secrets.token_hex`` would give)."""
    return f"{os.getpid()}-{os.urandom(16).hex()}"


def is_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


# --- pure encoding ------------------------------------------------------------


def encode(description: ChildDescription) -> bytes:
    repos: list[dict[str, Any]] = []
    for r in description.repositories:
        repos.append(
            {
                "url": r.url,
                "keys": list(r.keys),
                "threshold": r.threshold,
                "root_version": r.root_version,
                "modules": None if r.modules is None else list(r.modules),
                "ca_bundle": r.ca_bundle,
                "offline": r.offline,
                "lock_file": r.lock_file,
                "materialise": r.materialise
                if isinstance(r.materialise, bool)
                else list(r.materialise),
                "cache_dir": r.cache_dir,
                "state_dir": r.state_dir,
                "log_dir": r.log_dir,
                "limits": dict(r.limits),
                "auth": None
                if r.auth is None
                else {
                    "kind": r.auth.kind,
                    "where": r.auth.where,
                    "header": r.auth.header,
                    "scheme": r.auth.scheme,
                },
                "client_cert": r.client_cert,
                "client_key": r.client_key,
                "truststore": r.truststore,
                "mirrors": list(r.mirrors),
                "fallback": r.fallback,
            }
        )
    return dumps_canonical(
        {
            "format": FORMAT,
            "created": description.created,
            "pid": description.pid,
            "repositories": repos,
        }
    )


def _refuse(reason: str, **kw: Any) -> ChildConfigError:
    return ChildConfigError(f"child description: {reason}", check="child-format", **kw)


def _fields(value: object, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(f"{what} must be an object")
    if set(value) != allowed:
        raise _refuse(f"{what} has fields {sorted(value)}; expected {sorted(allowed)}")
    return value


def _typed(value: object, kind: type | tuple[type, ...], what: str, *, none: bool = False) -> Any:
    if value is None and none:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _refuse(f"{what} has the wrong type", got=repr(value))
    if not isinstance(value, kind):
        raise _refuse(f"{what} has the wrong type", got=repr(value))
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    items = _typed(value, list, what)
    return tuple(_typed(item, str, what) for item in items)


def decode(data: bytes) -> ChildDescription:
    """Parse an authenticated description body (strictly).

    Raises:
        ChildConfigError: malformed, unknown or missing fields, wrong types.
    """
    try:
        document = loads(data, what="child description")
    except SecureImportError as exc:
        raise _refuse(f"not valid JSON: {exc}") from None
    top = _fields(document, _TOP_FIELDS, "the description")
    if top["format"] != FORMAT:
        raise _refuse("unknown format", expected=FORMAT, got=repr(top["format"]))
    repos: list[RepositoryDescription] = []
    for index, item in enumerate(_typed(top["repositories"], list, "repositories")):
        what = f"repositories[{index}]"
        f = _fields(item, _REPO_FIELDS, what)
        materialise = f["materialise"]
        auth = None
        if f["auth"] is not None:
            a = _fields(f["auth"], _AUTH_FIELDS, f"{what}.auth")
            kind = _typed(a["kind"], str, f"{what}.auth.kind")
            if kind not in ("env", "file"):
                raise _refuse(f"{what}.auth.kind must be env or file", got=kind)
            auth = AuthSource(
                kind=kind,
                where=_typed(a["where"], str, f"{what}.auth.where"),
                header=_typed(a["header"], str, f"{what}.auth.header"),
                scheme=_typed(a["scheme"], str, f"{what}.auth.scheme", none=True),
            )
        limits = _typed(f["limits"], dict, f"{what}.limits")
        for name, value in limits.items():
            _typed(value, int, f"{what}.limits.{name}")
        repos.append(
            RepositoryDescription(
                url=_typed(f["url"], str, f"{what}.url"),
                keys=_strings(f["keys"], f"{what}.keys"),
                threshold=_typed(f["threshold"], int, f"{what}.threshold"),
                root_version=_typed(f["root_version"], int, f"{what}.root_version"),
                modules=None if f["modules"] is None else _strings(f["modules"], f"{what}.modules"),
                ca_bundle=_typed(f["ca_bundle"], str, f"{what}.ca_bundle", none=True),
                offline=_typed(f["offline"], bool, f"{what}.offline"),
                lock_file=_typed(f["lock_file"], str, f"{what}.lock_file", none=True),
                materialise=materialise
                if isinstance(materialise, bool)
                else _strings(materialise, f"{what}.materialise"),
                cache_dir=_typed(f["cache_dir"], str, f"{what}.cache_dir"),
                state_dir=_typed(f["state_dir"], str, f"{what}.state_dir"),
                log_dir=_typed(f["log_dir"], str, f"{what}.log_dir"),
                limits=dict(limits),
                auth=auth,
                client_cert=_typed(f["client_cert"], str, f"{what}.client_cert", none=True),
                client_key=_typed(f["client_key"], str, f"{what}.client_key", none=True),
                truststore=_typed(f["truststore"], bool, f"{what}.truststore"),
                mirrors=_strings(f["mirrors"], f"{what}.mirrors"),
                fallback=_typed(f["fallback"], str, f"{what}.fallback"),
            )
        )
    return ChildDescription(
        created=_typed(top["created"], int, "created"),
        pid=_typed(top["pid"], int, "pid"),
        repositories=tuple(repos),
    )


# --- the sealed file ------------------------------------------------------------


def _bound(state_dir: StrPath) -> bytes:
    """Bound into the seal: the format and the state directory it lives in,
    so a description sealed for another state directory never verifies here."""
    return binding([FORMAT.encode(), os.fsencode(os.path.abspath(state_dir))])


def _store(state_dir: StrPath) -> SealedStore:
    return SealedStore(os.path.join(state_dir, FOLDER), cache_dir=state_dir, state_dir=state_dir)


def write(state_dir: StrPath, ident: str, description: ChildDescription) -> str:
    """Seal ``description`` as ``ident`` in ``state_dir``; return the file.

    Raises:
        ChildConfigError: the state directory or its key cannot be used.
    """
    if not is_id(ident):
        raise ChildConfigError("not a description id", check="child-id", got=repr(ident))
    try:
        secure_dir(state_dir, what="state")
    except SecureImportError as exc:
        raise ChildConfigError(
            f"cannot write a description for child interpreters: {exc}",
            check="child-write",
            got=str(state_dir),
        ) from None
    if not _store(state_dir).seal(ident, _bound(state_dir), encode(description)):
        raise ChildConfigError(
            "cannot seal the description for child interpreters (state key or directory)",
            check="child-write",
            got=os.path.join(state_dir, FOLDER),
        )
    return os.path.join(state_dir, FOLDER, ident)


def read(state_dir: StrPath, value: str) -> ChildDescription:
    """The description named ``value`` (the environment variable's text) in
    ``state_dir``, after every check in the module docstring.

    Raises:
        ChildConfigError: ``check`` is ``child-id`` (not an id: a path or
            anything else), ``child-missing``, ``child-file`` (not ours or not
            private), ``child-seal`` (forged, edited, or sealed for another
            state directory; the file is deleted) or ``child-format``.
    """
    if not is_id(value):
        raise ChildConfigError(
            f"${ENV_VAR} must be a description id written by secure_import "
            "(<pid>-<32 hex digits>), not a path or a setting",
            check="child-id",
            expected="<pid>-<32 hex digits>",
            got=repr(value),
        )
    folder = os.path.join(state_dir, FOLDER)
    try:
        secure_dir(state_dir, what="state")
        if not os.path.exists(folder):
            raise ChildConfigError(
                "no description with this id in the state directory",
                check="child-missing",
                got=os.path.join(folder, value),
            )
        secure_dir(folder, what="state")
    except ChildConfigError:
        raise
    except SecureImportError as exc:
        raise ChildConfigError(str(exc), check="child-file", got=folder) from None
    path = os.path.join(folder, value)
    problem = _private_file(path)
    if problem == "missing":
        raise ChildConfigError(
            "no description with this id in the state directory",
            check="child-missing",
            got=path,
        )
    if problem is not None:
        raise ChildConfigError(f"the description file is {problem}", check="child-file", got=path)
    body = _store(state_dir).open(value, _bound(state_dir))
    if body is None:
        raise ChildConfigError(
            "the description's seal does not verify with this state directory's key "
            "(forged, edited, or written for another state directory); deleted",
            check="child-seal",
            got=path,
        )
    return decode(bytes(body))


def _private_file(path: str) -> str | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "a symlink or not a regular file"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"readable or writable by others ({stat.filemode(info.st_mode)})"
    if info.st_size > _MAX_BYTES:
        return "too large"
    return None


def remove(state_dir: StrPath, ident: str) -> None:
    """Delete our own description (never raises)."""
    if is_id(ident):
        try:
            os.unlink(os.path.join(state_dir, FOLDER, ident))
        except OSError:
            pass


def prune(state_dir: StrPath, *, keep: Sequence[str] = (), now: float | None = None) -> int:
    """Delete descriptions whose writer process is gone and that are older
    than :data:`STALE_AFTER`; return how many (never raises)."""
    folder = os.path.join(state_dir, FOLDER)
    now = time.time() if now is None else now
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name in keep or not is_id(name):
            continue
        pid = int(name.split("-", 1)[0])
        try:
            path = os.path.join(folder, name)
            if now - os.lstat(path).st_mtime < STALE_AFTER or _alive(pid):
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
