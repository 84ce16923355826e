"""The signed manifest: model, strict parser and builder (pure: bytes in, objects out).

The manifest is the payload of a DSSE envelope (see :mod:`secure_import.verify.envelope`)
and is parsed only after its signature verified.  It lists every file a
repository serves with its SHA-256 and length, and the top-level names it
provides.  Schema v1 (canonical JSON, sorted keys)::

    {"_type": "secure-import/manifest", "spec_version": 1, "version": 3,
     "root_version": 1, "issued": "2026-11-20T23:00:00Z",
     "expires": "2027-02-18T23:00:00Z", "provides": ["mod", "pkg"],
     "files": {"pkg/__init__.py": {"sha256": "<64 lowercase hex>", "length": 123}}}

Schema v2 is v1 plus one field, ``requires``: the signed dependency
declarations (:mod:`secure_import.verify.requires`).  A publisher writes v2
only when there is something to declare, so manifests without dependencies
stay v1 and readable by every consumer; a consumer that predates v2 refuses
a v2 manifest as an unsupported ``spec_version`` instead of ignoring a
declaration it cannot enforce.

Invariants of :func:`parse` (and therefore of what :func:`build_payload` can
produce, since it re-parses its own output):

- strict JSON only (:mod:`secure_import.verify.strictjson`): no duplicate keys, no
  floats, no huge integers, bounded depth (P1-P4);
- exactly the schema's fields, at the top level and in every file entry;
  unknown or missing fields are refused (P7);
- ``_type`` is exact and ``spec_version`` is 1 or 2; v1 has exactly the v1
  fields and v2 exactly those plus a non-empty ``requires`` (strict in every
  nested field too); ``version`` and ``root_version``
  are ints (never bools or strings) in 1..2**53 (P5);
- times are exactly ``YYYY-MM-DDTHH:MM:SSZ`` and ``issued <= expires``;
- ``provides`` is a non-empty list of unique ASCII identifiers that are not
  keywords, and each provided name has ``x.py`` or ``x/__init__.py`` listed;
- at most :data:`MAX_FILES` files; each ``sha256`` is 64 lowercase hex; each
  ``length`` is an int in 0..:data:`MAX_FILE_LENGTH`;
- every path passes :func:`check_path`: ASCII, relative, no empty, ``.`` or
  ``..`` component, no backslash, ``%``, ``:``, NUL or control character,
  bounded length, identifiers only for ``.py`` files, and no compiled or magic
  files (``.so``, ``.pyd``, ``.pyc``, ``.pth``...) (F4, F5, F7);
- no two paths are equal after case folding, no file path is also a directory
  of another path, and no module is listed both as ``a/b.py`` and
  ``a/b/__init__.py`` (F6);
- every path outside a top-level ``NAME-VERSION.dist-info`` directory is under
  a provided name;
- one bad path refuses the whole manifest with
  :class:`~secure_import.errors.UnsafePathError`; every other defect raises
  :class:`~secure_import.errors.FormatError`.  Nothing else escapes.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from secure_import._frozen import Frozen
from secure_import.errors import FormatError
from secure_import.verify import strictjson
from secure_import.verify.entries import FileEntry, FileTable
from secure_import.verify.paths import (
    DIST_INFO,
    check_layout,
    check_path,
    is_identifier,
    path_problem,
    refuse_path,
    show,
)

# Dependency declarations (and the version grammar under them) are parsed
# only for a manifest that has some: a v1 manifest never imports them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.verify.requires import Requirement

__all__ = [
    "MANIFEST_TYPE",
    "MAX_FILES",
    "MAX_FILE_LENGTH",
    "MAX_VERSION",
    "PARSE_RULES",
    "SPEC_VERSION",
    "SPEC_VERSIONS",
    "FileEntry",
    "FileTable",
    "Manifest",
    "PlainManifest",
    "build_payload",
    "check_path",
    "format_time",
    "from_plain",
    "parse",
    "parse_time",
    "to_plain",
]

MANIFEST_TYPE = "secure-import/manifest"
SPEC_VERSION = 1
#: Every spec version :func:`parse` reads: 1, and 2 (v1 plus ``requires``).
SPEC_VERSIONS = (1, 2)
MAX_VERSION = 2**53
"""Largest version number a parser accepts (also the JSON safe-integer bound)."""
MAX_FILES = 100_000
MAX_FILE_LENGTH = 256 * 1024 * 1024

_FIELDS = frozenset(
    {"_type", "spec_version", "version", "root_version", "issued", "expires", "provides", "files"}
)
_FIELDS_V2 = _FIELDS | {"requires"}
_FILE_FIELDS = frozenset({"sha256", "length"})
_NO_REQUIRES: Mapping[str, Requirement] = MappingProxyType({})

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def _module_dir(fullname: str) -> str | None:
    """``"a.b"`` -> ``"a/b"``; None if ``fullname`` is not a dotted module name."""
    parts = fullname.split(".")
    # "pkg.__init__" would run the package's code a second time as another module.
    if not all(is_identifier(part) and part != "__init__" for part in parts):
        return None
    return "/".join(parts)


class Manifest(Frozen):
    """A parsed, validated manifest.  Build it with :func:`parse` only."""

    _fields = ("version", "root_version", "issued", "expires", "provides", "files", "requires")
    # Weak references: per-manifest indexes (hook.resources) die with it.
    __slots__ = (*_fields, "__weakref__")
    _unhashed = frozenset({"files", "requires"})

    version: int
    root_version: int
    issued: datetime
    expires: datetime
    provides: tuple[str, ...]
    files: Mapping[str, FileEntry]
    #: Signed dependency declarations, by top-level name (empty for v1).
    requires: Mapping[str, Requirement]

    def __init__(
        self,
        version: int,
        root_version: int,
        issued: datetime,
        expires: datetime,
        provides: tuple[str, ...],
        files: Mapping[str, FileEntry],
        requires: Mapping[str, Requirement] | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "version", version)
        init(self, "root_version", root_version)
        init(self, "issued", issued)
        init(self, "expires", expires)
        init(self, "provides", provides)
        init(self, "files", files)
        init(self, "requires", _NO_REQUIRES if requires is None else requires)

    def find_module(self, fullname: str) -> tuple[FileEntry, bool] | None:
        """The file defining module ``fullname`` and whether it is a package.

        ``"a.b"`` maps to ``a/b/__init__.py`` (a package) or ``a/b.py`` (a
        module); None if neither is listed.
        """
        base = _module_dir(fullname)
        if base is None:
            return None
        entry = self.files.get(f"{base}/__init__.py")
        if entry is not None:
            return entry, True
        entry = self.files.get(f"{base}.py")
        if entry is not None:
            return entry, False
        return None

    def is_package(self, fullname: str) -> bool:
        """True if ``fullname`` is listed as a package (``.../__init__.py``)."""
        found = self.find_module(fullname)
        return found is not None and found[1]

    def children(self, package: str) -> list[tuple[str, bool]]:
        """Direct submodules of ``package`` as sorted ``(short name, is_package)``.

        ``package=""`` lists the top-level modules.  An unknown package, or a
        plain module, has no children.
        """
        if package:
            if not self.is_package(package):
                return []
            prefix = package.replace(".", "/") + "/"
        else:
            prefix = ""
        found: dict[str, bool] = {}
        for path in self.files:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            head, slash, tail = rest.partition("/")
            if not slash:
                if rest.endswith(".py") and rest != "__init__.py":
                    found.setdefault(rest[:-3], False)
            elif tail == "__init__.py":
                found[head] = True
        return sorted(found.items())

    def files_under(self, package: str) -> list[FileEntry]:
        """Every file under ``package``'s directory (all files for ``""``), by path."""
        prefix = package.replace(".", "/") + "/" if package else ""
        return [self.files[path] for path in sorted(self.files) if path.startswith(prefix)]

    def dist_info_dirs(self) -> list[str]:
        """The top-level ``NAME-VERSION.dist-info`` directories, sorted."""
        dirs = {
            head
            for head, slash, _ in (path.partition("/") for path in self.files)
            if slash and DIST_INFO.fullmatch(head)
        }
        return sorted(dirs)


# --- time ------------------------------------------------------------------


def format_time(dt: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC.

    Fractions of a second are dropped (the format has none).

    Raises:
        FormatError: if ``dt`` is not a timezone-aware datetime.
    """
    if not isinstance(dt, datetime) or dt.utcoffset() is None:
        raise FormatError("times must be timezone-aware datetimes", check="time", got=repr(dt))
    try:
        utc = dt.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise FormatError("time out of range", check="time", got=repr(dt)) from exc
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )


def _parse_time(value: object, *, what: str, url: str | None) -> datetime:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise FormatError(
            f"{what} must be a time of the form YYYY-MM-DDTHH:MM:SSZ",
            check="time",
            url=url,
            got=show(value),
        )
    try:
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise FormatError(
            f"{what} is not a valid time", check="time", url=url, got=show(value)
        ) from exc


def parse_time(s: str) -> datetime:
    """Parse exactly ``YYYY-MM-DDTHH:MM:SSZ`` into an aware UTC datetime.

    Raises:
        FormatError: if ``s`` is not of exactly that form or not a real time.
    """
    return _parse_time(s, what="time", url=None)


# --- parsing ---------------------------------------------------------------


def _format_error(
    message: str, url: str | None, *, expected: object = None, got: object = None
) -> FormatError:
    return FormatError(
        f"manifest: {message}", check="manifest", url=url, expected=expected, got=got
    )


def _parse_version(value: object, what: str, url: str | None) -> int:
    if type(value) is not int or not 1 <= value <= MAX_VERSION:
        raise _format_error(
            f"{what} must be an integer in 1..2**53", url, expected="int", got=show(value)
        )
    return value


def _parse_provides(value: object, url: str | None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _format_error("provides must be a non-empty list", url, got=show(value))
    names: list[str] = []
    seen: set[str] = set()
    for name in value:
        if (
            not isinstance(name, str)
            or not is_identifier(name)
            or keyword.iskeyword(name)
            or name == "__init__"
        ):
            raise _format_error(
                "every provided name must be an ASCII identifier and not a keyword",
                url,
                got=show(name),
            )
        if name in seen:
            raise _format_error(f"provided name {name!r} listed twice", url)
        seen.add(name)
        names.append(name)
    return tuple(names)


def _parse_entry(path: str, value: object, url: str | None) -> FileEntry:
    if not isinstance(value, dict) or set(value) != _FILE_FIELDS:
        raise _format_error(
            f"file entry for {show(path)} must be an object with exactly sha256 and length",
            url,
            got=show(sorted(value) if isinstance(value, dict) else value),
        )
    digest = value["sha256"]
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        raise _format_error(
            f"sha256 of {show(path)} must be 64 lowercase hex digits", url, got=show(digest)
        )
    length = value["length"]
    if type(length) is not int or not 0 <= length <= MAX_FILE_LENGTH:
        raise _format_error(
            f"length of {show(path)} must be an integer in 0..{MAX_FILE_LENGTH}",
            url,
            got=show(length),
        )
    return FileEntry(path=path, sha256=digest, length=length)


def parse(payload: bytes, *, url: str | None = None) -> Manifest:
    """Parse and validate a verified manifest payload.

    Call only on bytes returned by :func:`secure_import.verify.envelope.verify`.

    Raises:
        FormatError: if the payload is not a well-formed v1 manifest.
        UnsafePathError: if any listed path is unsafe (the whole manifest is
            refused).
    """
    document = strictjson.loads(payload, what="manifest", url=url)
    if not isinstance(document, dict):
        raise _format_error("must be a JSON object", url)
    spec_version = document.get("spec_version")
    if type(spec_version) is int and spec_version not in SPEC_VERSIONS:
        raise _format_error(
            "unsupported spec_version", url, expected=SPEC_VERSIONS, got=show(spec_version)
        )
    expected_fields = _FIELDS_V2 if spec_version == 2 else _FIELDS
    if set(document) != expected_fields:
        missing = sorted(expected_fields - set(document))
        unknown = sorted(set(document) - expected_fields)
        raise _format_error(
            f"wrong set of fields for spec_version {show(spec_version, 20)}",
            url,
            expected=sorted(expected_fields),
            got=f"missing {missing}, unknown {[show(name, 40) for name in unknown[:10]]}",
        )
    if document["_type"] != MANIFEST_TYPE:
        raise _format_error(
            "_type is not a manifest", url, expected=MANIFEST_TYPE, got=show(document["_type"])
        )
    if type(spec_version) is not int:
        raise _format_error(
            "unsupported spec_version", url, expected=SPEC_VERSIONS, got=show(spec_version)
        )
    version = _parse_version(document["version"], "version", url)
    root_version = _parse_version(document["root_version"], "root_version", url)
    issued = _parse_time(document["issued"], what="manifest issued", url=url)
    expires = _parse_time(document["expires"], what="manifest expires", url=url)
    if issued > expires:
        raise _format_error(
            "issued is later than expires",
            url,
            expected=f"issued <= {format_time(expires)}",
            got=format_time(issued),
        )
    provides = _parse_provides(document["provides"], url)

    raw_files = document["files"]
    if not isinstance(raw_files, dict):
        raise _format_error("files must be an object", url, got=show(raw_files))
    if len(raw_files) > MAX_FILES:
        raise _format_error(
            "too many files", url, expected=f"at most {MAX_FILES}", got=len(raw_files)
        )
    for path in raw_files:
        problem = path_problem(path)
        if problem is not None:
            raise refuse_path(path, problem, url)
    check_layout(raw_files, provides, url)
    for name in provides:
        if f"{name}.py" not in raw_files and f"{name}/__init__.py" not in raw_files:
            raise _format_error(
                f"provided name {name!r} has neither {name}.py nor {name}/__init__.py", url
            )
    entries = {path: _parse_entry(path, raw_files[path], url) for path in sorted(raw_files)}
    if spec_version == 2:
        from secure_import.verify.requires import parse_requires
    requires = (
        parse_requires(document["requires"], provides=provides, url=url)
        if spec_version == 2
        else _NO_REQUIRES
    )
    return Manifest(
        version=version,
        root_version=root_version,
        issued=issued,
        expires=expires,
        provides=provides,
        files=MappingProxyType(entries),
        requires=requires,
    )


#: Bump whenever :func:`parse` changes what it accepts: memos of earlier
#: parses (:mod:`secure_import.store.memo`) are bound to it and stop applying.
PARSE_RULES = 2

#: What :func:`to_plain` returns: only built-in types, so ``marshal`` can keep
#: it.  Files are three columns (paths, sha256s, lengths), not one tuple per
#: file: loading a memo then creates three containers instead of hundreds.
#: The last item is the ``requires`` table as canonical JSON (``b""`` for v1).
PlainManifest = tuple[
    int,
    int,
    int,
    int,
    tuple[str, ...],
    tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]],
    bytes,
]


def to_plain(parsed: Manifest) -> PlainManifest:
    """``parsed`` as built-in values (times as POSIX seconds), for a memo."""
    entries = list(parsed.files.values())
    return (
        parsed.version,
        parsed.root_version,
        int(parsed.issued.timestamp()),
        int(parsed.expires.timestamp()),
        parsed.provides,
        (
            tuple(e.path for e in entries),
            tuple(e.sha256 for e in entries),
            tuple(e.length for e in entries),
        ),
        _requires_json(parsed.requires) if parsed.requires else b"",
    )


def _requires_json(requires: Mapping[str, Requirement]) -> bytes:
    from secure_import.verify.requires import requires_to_json

    return strictjson.dumps_canonical(requires_to_json(requires))


def from_plain(plain: PlainManifest) -> Manifest:
    """The :class:`Manifest` that :func:`to_plain` was given.

    Only for values that came from :func:`to_plain` of a manifest :func:`parse`
    accepted (an authenticated memo): nothing is validated again, except that
    the columns line up (``ValueError`` otherwise).  The ``requires`` table,
    small and rare, is parsed again (a ``FormatError`` if it does not parse).
    """
    version, root_version, issued, expires, provides, (paths, digests, lengths), req = plain
    if req:
        from secure_import.verify.requires import parse_requires
    requires = (
        parse_requires(strictjson.loads(req, what="memo"), provides=tuple(provides))
        if req
        else _NO_REQUIRES
    )
    return Manifest(
        version=version,
        root_version=root_version,
        issued=datetime.fromtimestamp(issued, UTC),
        expires=datetime.fromtimestamp(expires, UTC),
        provides=tuple(provides),
        files=FileTable(
            dict(zip(paths, digests, strict=True)), dict(zip(paths, lengths, strict=True))
        ),
        requires=requires,
    )


def build_payload(
    *,
    version: int,
    root_version: int,
    issued: datetime,
    expires: datetime,
    provides: Iterable[str],
    files: Iterable[FileEntry],
    requires: Mapping[str, Requirement] | None = None,
) -> bytes:
    """Build the canonical manifest payload, refusing anything :func:`parse` would.

    ``provides`` is written sorted; fractions of a second are dropped from
    the times.  With declarations in ``requires`` the payload is spec
    version 2, else version 1 (readable by consumers that predate v2).  The
    result is re-parsed before it is returned, so a publisher can never
    produce a manifest that consumers refuse.

    Raises:
        FormatError: if any input breaks a manifest rule.
        UnsafePathError: if a path is unsafe or listed twice.
    """
    names = list(provides)
    if not all(isinstance(name, str) for name in names):
        raise _format_error("every provided name must be a string", None, got=show(names))
    listed: dict[str, dict[str, object]] = {}
    for entry in files:
        if not isinstance(entry, FileEntry):
            raise _format_error("files must be FileEntry objects", None, got=show(entry))
        problem = path_problem(entry.path)
        if problem is not None:
            raise refuse_path(entry.path, problem, None)
        if entry.path in listed:
            raise refuse_path(entry.path, "listed twice", None)
        listed[entry.path] = {"sha256": entry.sha256, "length": entry.length}
    document = {
        "_type": MANIFEST_TYPE,
        "spec_version": 2 if requires else SPEC_VERSION,
        "version": version,
        "root_version": root_version,
        "issued": format_time(issued),
        "expires": format_time(expires),
        "provides": sorted(names),
        "files": listed,
    }
    if requires:
        from secure_import.verify.requires import Requirement, requires_to_json

        if not all(isinstance(r, Requirement) and r.name == n for n, r in requires.items()):
            raise _format_error("requires must map each name to its Requirement", None)
        document["requires"] = requires_to_json(requires)
    try:
        payload = strictjson.dumps_canonical(document)
    except (TypeError, ValueError) as exc:
        raise _format_error("inputs cannot be represented as JSON", None) from exc
    parse(payload)
    return payload
