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

Schema v3 is v1 plus ``bundles`` (the signed, compressed module bundles:
:mod:`secure_import.verify.bundle`) and, when there is something to declare,
``requires``.  A consumer that predates v3 refuses it as an unsupported
``spec_version``; this one reads v1 and v2 unchanged (their ``bundles`` is
``None``: no listing, the earlier unsigned bundle layout applies).

Invariants of :func:`parse` (and therefore of what :func:`build_payload` can
produce, since it re-parses its own output):

- strict JSON only (:mod:`secure_import.verify.strictjson`): no duplicate keys, no
  floats, no huge integers, bounded depth (P1-P4);
- exactly the schema's fields, at the top level and in every file entry;
  unknown or missing fields are refused (P7);
- ``_type`` is exact and ``spec_version`` is 1, 2 or 3; v1 has exactly the v1
  fields, v2 exactly those plus a non-empty ``requires`` (strict in every
  nested field too), v3 the v1 fields plus ``bundles`` and optionally a
  non-empty ``requires``; ``version`` and ``root_version``
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
- every bundle of a v3 manifest is consistent with the files: its members
  are ``.py`` files of this manifest under one top-level name, in no other
  bundle, and its name is content-addressed
  (:func:`~secure_import.verify.bundle.parse_bundles`);
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

from secure_import.errors import FormatError
from secure_import.verify import strictjson
from secure_import.verify.bundle import BundleEntry, bundles_to_json, parse_bundles
from secure_import.verify.entries import FileEntry, FileTable
from secure_import.verify.model import _NO_REQUIRES, Manifest
from secure_import.verify.paths import (
    check_layout,
    check_path,
    is_identifier,
    path_problem,
    refuse_path,
    show,
)
from secure_import.verify.times import format_time, parse_time, parse_time_field

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
    "BundleEntry",
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
#: Every spec version :func:`parse` reads: 1, 2 (v1 plus ``requires``) and
#: 3 (v1 plus ``bundles``, and ``requires`` when there is one).
SPEC_VERSIONS = (1, 2, 3)
MAX_VERSION = 2**53
"""Largest version number a parser accepts (also the JSON safe-integer bound)."""
MAX_FILES = 100_000
MAX_FILE_LENGTH = 256 * 1024 * 1024

_FIELDS = frozenset(
    {"_type", "spec_version", "version", "root_version", "issued", "expires", "provides", "files"}
)
_FIELDS_V2 = _FIELDS | {"requires"}
_FIELDS_V3 = _FIELDS | {"bundles"}
_FILE_FIELDS = frozenset({"sha256", "length"})

_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    if spec_version == 3:
        expected_fields = _FIELDS_V3 | ({"requires"} & set(document))  # requires is optional
    else:
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
    issued = parse_time_field(document["issued"], what="manifest issued", url=url)
    expires = parse_time_field(document["expires"], what="manifest expires", url=url)
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
    if "requires" in document:
        from secure_import.verify.requires import parse_requires
    requires = (
        parse_requires(document["requires"], provides=provides, url=url)
        if "requires" in document
        else _NO_REQUIRES
    )
    bundles = parse_bundles(document["bundles"], entries, url=url) if spec_version == 3 else None
    return Manifest(
        version=version,
        root_version=root_version,
        issued=issued,
        expires=expires,
        provides=provides,
        files=MappingProxyType(entries),
        requires=requires,
        bundles=bundles,
    )


#: Bump whenever :func:`parse` changes what it accepts: memos of earlier
#: parses (:mod:`secure_import.store.memo`) are bound to it and stop applying.
PARSE_RULES = 3

#: What :func:`to_plain` returns: only built-in types, so ``marshal`` can keep
#: it.  Files are three columns (paths, sha256s, lengths), not one tuple per
#: file: loading a memo then creates three containers instead of hundreds.
#: Then the ``requires`` table as canonical JSON (``b""`` for v1), and the
#: bundles as ``(path, sha256, length, members)`` rows (``None`` before v3).
PlainManifest = tuple[
    int,
    int,
    int,
    int,
    tuple[str, ...],
    tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]],
    bytes,
    tuple[tuple[str, str, int, tuple[str, ...]], ...] | None,
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
        None if parsed.bundles is None else tuple(tuple(b) for b in parsed.bundles),  # type: ignore[misc]
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
    version, root_version, issued, expires, provides, columns, req, bundles = plain
    paths, digests, lengths = columns
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
        bundles=None if bundles is None else tuple(BundleEntry(*row) for row in bundles),
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
    bundles: Iterable[BundleEntry] | None = None,
) -> bytes:
    """Build the canonical manifest payload, refusing anything :func:`parse` would.

    ``provides`` is written sorted; fractions of a second are dropped from
    the times.  With ``bundles`` (even none) the payload is spec version 3;
    else, with declarations in ``requires``, version 2, else version 1
    (readable by consumers that predate v2 and v3).  The
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
        "spec_version": 3 if bundles is not None else 2 if requires else SPEC_VERSION,
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
    if bundles is not None:
        document["bundles"] = bundles_to_json(list(bundles))
    try:
        payload = strictjson.dumps_canonical(document)
    except (TypeError, ValueError) as exc:
        raise _format_error("inputs cannot be represented as JSON", None) from exc
    parse(payload)
    return payload
