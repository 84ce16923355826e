"""Signed, compressed module bundles: listing, checking and opening (pure).

A bundle carries the ``.py`` files of one part of a package (a whole small
package, or one package directory of a large one) as one zlib stream, so a
cold import costs one request per part actually imported and about the
bytes of a wheel.  Since manifest spec version 3 every bundle is listed in
the signed manifest (:class:`BundleEntry`: its path, the SHA-256 and length
of its *compressed* bytes, and its member files), so:

- a bundle is checked against its signed length and SHA-256 *before* a byte
  of it is decompressed (:func:`open_bundle`): a tampered, truncated, padded
  or substituted bundle (one served for another part) is refused without
  running the decompressor on it (THREATS F1, F2, M13);
- decompression is capped at the sum of its members' signed lengths plus
  one byte: a stream that expands further is refused with at most that much
  memory spent, even if the publisher's key signed it (THREATS T8);
- the expanded bytes are split by the members' signed lengths and each piece
  is checked against the member's own signed SHA-256 before it is returned;
- the listing itself (:func:`parse_bundles`, run by the manifest parser) is
  consistent with the files: members are sorted, unique, ``.py`` files the
  manifest lists under one top-level name, no file is in two bundles, the
  path is content-addressed (it carries the first 32 hex digits of the
  signed SHA-256) and the sizes are bounded.  One bad bundle refuses the
  whole manifest.

Manifests of spec versions 1 and 2 list no bundles.  For them the consumer
still reads the earlier layout, :func:`bundle_entries` / :func:`bundle_path`:
one uncompressed concatenation of a top-level package's modules, split by the
signed lengths and checked piece by piece (:func:`split_pieces`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from secure_import.config import BUNDLE_DIR
from secure_import.errors import FormatError, LengthMismatchError
from secure_import.verify.entries import FileEntry
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.paths import show

__all__ = [
    "BUNDLE_SUFFIX",
    "MAX_BUNDLE_EXPANDED",
    "MAX_BUNDLE_LENGTH",
    "BundleEntry",
    "bundle_entries",
    "bundle_path",
    "bundles_to_json",
    "expanded_length",
    "make_bundle",
    "open_bundle",
    "open_unsigned_bundle",
    "parse_bundles",
    "split_pieces",
    "top_of",
]

#: Suffix of a signed (compressed) bundle's name.
BUNDLE_SUFFIX = ".zlib"
#: Largest compressed bundle a manifest may list.
MAX_BUNDLE_LENGTH = 256 * 1024 * 1024
#: Largest sum of member lengths of one bundle (the decompression cap's bound).
MAX_BUNDLE_EXPANDED = 256 * 1024 * 1024
_ZLIB_LEVEL = 9

_BUNDLE_FIELDS = frozenset({"sha256", "length", "members"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(
    re.escape(BUNDLE_DIR)
    + r"/([A-Za-z0-9_][A-Za-z0-9_.-]{0,199})\.([0-9a-f]{32})"
    + re.escape(BUNDLE_SUFFIX)
)


class BundleEntry(tuple[str, str, int, tuple[str, ...]]):
    """One signed bundle: where it lives, the SHA-256 and length of its
    compressed bytes, and the paths of its members in stream order.

    A tuple written out like :class:`~secure_import.verify.entries.FileEntry`
    (not a ``typing.NamedTuple``: no ``typing`` import on the warm path).
    """

    __slots__ = ()

    def __new__(cls, path: str, sha256: str, length: int, members: tuple[str, ...]) -> BundleEntry:
        return tuple.__new__(cls, (path, sha256, length, tuple(members)))

    def __getnewargs__(self) -> tuple[str, str, int, tuple[str, ...]]:
        return (self[0], self[1], self[2], self[3])

    @property
    def path(self) -> str:
        return self[0]

    @property
    def sha256(self) -> str:
        return self[1]

    @property
    def length(self) -> int:
        return self[2]

    @property
    def members(self) -> tuple[str, ...]:
        return self[3]

    def __repr__(self) -> str:
        return (
            f"BundleEntry(path={self[0]!r}, sha256={self[1]!r}, length={self[2]!r}, "
            f"members={self[3]!r})"
        )


def top_of(path: str) -> str:
    """The top-level name a file path belongs to (``"a/b.py"`` and ``"a.py"`` -> ``"a"``)."""
    return path.split("/", 1)[0].removesuffix(".py")


def expanded_length(bundle: BundleEntry, files: Mapping[str, FileEntry]) -> int:
    """Sum of the signed lengths of ``bundle``'s members: its decompressed size."""
    return sum(files[member].length for member in bundle.members)


# -- the signed listing ------------------------------------------------------


def _listing_error(message: str, url: str | None, *, got: object = None) -> FormatError:
    return FormatError(f"manifest: {message}", check="manifest-bundles", url=url, got=got)


def parse_bundles(
    value: object, files: Mapping[str, FileEntry], *, url: str | None = None
) -> tuple[BundleEntry, ...]:
    """The ``bundles`` object of a spec version 3 manifest, checked against its files.

    Raises:
        FormatError: any rule of the module docstring is broken (the whole
            manifest is refused).
    """
    if not isinstance(value, dict):
        raise _listing_error("bundles must be an object", url, got=show(value))
    if len(value) > len(files):
        raise _listing_error("more bundles than files", url, got=len(value))
    owner: dict[str, str] = {}
    bundles: list[BundleEntry] = []
    for path in sorted(value):
        bundles.append(_parse_bundle(path, value[path], files, owner, url))
    return tuple(bundles)


def _parse_bundle(
    path: object,
    raw: object,
    files: Mapping[str, FileEntry],
    owner: dict[str, str],
    url: str | None,
) -> BundleEntry:
    name = _NAME.fullmatch(path) if isinstance(path, str) else None
    if name is None or not isinstance(path, str):
        raise _listing_error(
            f"bundle path must be {BUNDLE_DIR}/LABEL.<32 hex>{BUNDLE_SUFFIX}", url, got=show(path)
        )
    if not isinstance(raw, dict) or set(raw) != _BUNDLE_FIELDS:
        raise _listing_error(
            f"bundle {path} must be an object with exactly sha256, length and members",
            url,
            got=show(sorted(raw) if isinstance(raw, dict) else raw),
        )
    digest, length, members = raw["sha256"], raw["length"], raw["members"]
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        raise _listing_error(
            f"sha256 of bundle {path} must be 64 lowercase hex", url, got=show(digest)
        )
    if name.group(2) != digest[:32]:
        raise _listing_error(
            f"bundle {path} is not named after its sha256 (content-addressed names only)",
            url,
            got=digest,
        )
    if type(length) is not int or not 1 <= length <= MAX_BUNDLE_LENGTH:
        raise _listing_error(
            f"length of bundle {path} must be an integer in 1..{MAX_BUNDLE_LENGTH}",
            url,
            got=show(length),
        )
    if not isinstance(members, list) or not members:
        raise _listing_error(f"members of bundle {path} must be a non-empty list", url)
    if not all(isinstance(m, str) for m in members) or members != sorted(set(members)):
        raise _listing_error(
            f"members of bundle {path} must be distinct strings in sorted order",
            url,
            got=show(members),
        )
    top = top_of(members[0])
    expanded = 0
    for member in members:
        entry = files.get(member)
        if entry is None or not member.endswith(".py"):
            raise _listing_error(
                f"bundle {path} lists {show(member)}, which is not a .py file of the manifest",
                url,
            )
        if top_of(member) != top:
            raise _listing_error(
                f"bundle {path} mixes top-level names {top!r} and {top_of(member)!r}", url
            )
        other = owner.setdefault(member, path)
        if other != path:
            raise _listing_error(f"{member} is a member of two bundles: {other} and {path}", url)
        expanded += entry.length
    if expanded > MAX_BUNDLE_EXPANDED:
        raise _listing_error(
            f"bundle {path} expands to more than {MAX_BUNDLE_EXPANDED} bytes", url, got=expanded
        )
    return BundleEntry(path, digest, length, tuple(members))


def bundles_to_json(bundles: Sequence[BundleEntry]) -> dict[str, dict[str, object]]:
    """The ``bundles`` object of a manifest payload for ``bundles``."""
    return {
        b.path: {"sha256": b.sha256, "length": b.length, "members": list(b.members)}
        for b in bundles
    }


# -- bytes -------------------------------------------------------------------


def make_bundle(
    label: str, members: Sequence[tuple[FileEntry, bytes]]
) -> tuple[BundleEntry, bytes]:
    """Compress ``members`` (sorted by path) into a bundle named after ``label``
    and its content; the publisher's side of :func:`open_bundle`."""
    import zlib

    ordered = sorted(members, key=lambda pair: pair[0].path)
    data = zlib.compress(b"".join(body for _, body in ordered), _ZLIB_LEVEL)
    digest = hashlib.sha256(data).hexdigest()
    entry = BundleEntry(
        f"{BUNDLE_DIR}/{label}.{digest[:32]}{BUNDLE_SUFFIX}",
        digest,
        len(data),
        tuple(e.path for e, _ in ordered),
    )
    return entry, data


def open_bundle(
    data: bytes, bundle: BundleEntry, files: Mapping[str, FileEntry], *, url: str
) -> dict[str, bytes]:
    """The verified member bytes of a fetched bundle, by path.

    Order of checks: the compressed bytes' length and SHA-256 against the
    signed listing, then decompression capped at the members' signed lengths
    plus one byte, then each member's SHA-256.  ``url``: the URL actually
    fetched (named in every error).

    Raises:
        LengthMismatchError, HashMismatchError: the compressed bytes are not
            the signed ones (nothing was decompressed), the stream expands
            beyond or falls short of its members, or a member fails its hash.
        FormatError: the signed bytes are not a well-formed zlib stream.
    """
    verify_bytes(data, FileEntry(bundle.path, bundle.sha256, bundle.length), url=url)
    import zlib  # only once the signed hash matched (and off the warm path)

    expected = expanded_length(bundle, files)
    inflater = zlib.decompressobj()
    try:
        # max_length=0 would mean "no limit": the +1 keeps the cap real for a
        # bundle of empty files and shows an overlong stream as one byte too many.
        body = inflater.decompress(data, expected + 1)
    except zlib.error as exc:
        raise FormatError(
            f"bundle {bundle.path} is not a valid zlib stream",
            check="bundle",
            url=url,
            got=str(exc),
        ) from exc
    if len(body) > expected or inflater.unconsumed_tail:
        raise LengthMismatchError(
            f"bundle {bundle.path} expands beyond its members' signed lengths "
            "(stopped decompressing)",
            check="bundle-expanded-length",
            url=url,
            expected=f"{expected} bytes",
            got=f"more than {expected} bytes",
        )
    if len(body) < expected or not inflater.eof or inflater.unused_data:
        raise LengthMismatchError(
            f"bundle {bundle.path} does not expand to exactly its members' signed lengths",
            check="bundle-expanded-length",
            url=url,
            expected=f"{expected} bytes, then the end of the stream",
            got=f"{len(body)} bytes, end of stream: {inflater.eof}, "
            f"{len(inflater.unused_data)} trailing bytes",
        )
    return split_pieces(body, [files[member] for member in bundle.members], url=url)


def split_pieces(body: bytes, entries: Sequence[FileEntry], *, url: str) -> dict[str, bytes]:
    """``body`` cut by the signed lengths of ``entries``, each piece verified.

    The caller has checked that ``len(body)`` is the sum of the lengths.

    Raises:
        HashMismatchError: a piece is not its entry's signed bytes.
    """
    pieces: dict[str, bytes] = {}
    view = memoryview(body)
    offset = 0
    for entry in entries:
        piece = bytes(view[offset : offset + entry.length])
        offset += entry.length
        verify_bytes(piece, entry, url=url)  # the URL actually fetched: the bundle
        pieces[entry.path] = piece
    return pieces


# -- the layout of spec versions 1 and 2 ---------------------------------------


def open_unsigned_bundle(
    data: bytes, entries: Sequence[FileEntry], *, url: str
) -> dict[str, bytes]:
    """The verified pieces of an unsigned (legacy) bundle of ``entries``.

    Raises:
        LengthMismatchError: ``data`` is not exactly the signed lengths' sum.
        HashMismatchError: a piece is not its entry's signed bytes.
    """
    total = sum(e.length for e in entries)
    if len(data) != total:
        raise LengthMismatchError(
            "the package bundle is not as long as its signed files",
            check="length",
            url=url,
            expected=f"{total} bytes",
            got=f"{len(data)} bytes",
        )
    return split_pieces(data, entries, url=url)


def bundle_entries(files: Mapping[str, FileEntry], top: str) -> list[FileEntry]:
    """The code entries of top-level package ``top``, in legacy bundle order."""
    # Paths first: a repository may list many packages, and only this one's
    # entries need to be looked up (or built, for a memo's lazy table).
    prefix = f"{top}/"
    paths = [p for p in files if p.startswith(prefix) and p.endswith(".py")]
    if f"{top}.py" in files:
        paths.append(f"{top}.py")
    paths.sort()
    return [files[path] for path in paths]


def bundle_path(entries: list[FileEntry], top: str) -> str:
    """Repository-relative path of the legacy (uncompressed, unlisted) bundle for
    ``entries`` (content-addressed, so a CDN can never serve a bundle of
    another version under this name)."""
    listing = "\n".join(f"{e.path} {e.sha256} {e.length}" for e in entries)
    digest = hashlib.sha256(listing.encode()).hexdigest()[:32]
    return f"{BUNDLE_DIR}/{top}.{digest}.bin"
