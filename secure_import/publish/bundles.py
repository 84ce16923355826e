"""Which modules a publisher bundles together, and writing the bundles.

A bundle is the unit a consumer fetches and verifies at once on a cold
import (:mod:`secure_import.verify.bundle`).  The grouping is the
publisher's choice; the consumer only follows the signed listing.  Modes:

- ``split`` (the default): a top-level package whose modules total at most
  ``split_above`` bytes is one bundle (one request for the whole package,
  cold); a larger one gets one bundle per package directory holding that
  directory's own modules, so importing ``big.core`` fetches ``big``'s and
  ``big/core``'s bundles and never ``big/tests`` or ``big/plotting``.  One
  bundle per directory, never a part of one: every module of a package is
  verified before any of it runs (THREATS F1);
- ``whole``: one bundle per top-level package, whatever its size;
- ``legacy``: the unsigned, uncompressed per-package bundles of manifest
  spec versions 1 and 2 and no ``bundles`` listing, for consumers that
  predate spec version 3 (they refuse a v3 manifest).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from secure_import.errors import ConfigError, SecureImportError
from secure_import.store.fsutil import atomic_write, read_file
from secure_import.verify.bundle import (
    BundleEntry,
    bundle_entries,
    bundle_path,
    make_bundle,
    open_bundle,
    top_of,
)
from secure_import.verify.entries import FileEntry
from secure_import.verify.manifest import Manifest

__all__ = [
    "BUNDLE_MODES",
    "DEFAULT_SPLIT_ABOVE",
    "Built",
    "build_bundles",
    "site_bundles",
    "write_bundles",
]

#: The ``--bundles`` modes of ``secure-import sign``.
BUNDLE_MODES = ("split", "whole", "legacy")
#: A package whose modules total more than this many bytes is split per directory.
DEFAULT_SPLIT_ABOVE = 1024 * 1024
_MAX_LABEL = 120

#: Bundles ready to write: repository-relative path -> bytes, and the signed
#: listing (``None`` in legacy mode: the manifest lists no bundles).
Built = tuple[dict[str, bytes], list[BundleEntry] | None]


def _groups(
    entries: Sequence[FileEntry], provides: Sequence[str], mode: str, split_above: int
) -> list[tuple[str, list[FileEntry]]]:
    """``(label, members)`` for every bundle, in a stable order."""
    groups: list[tuple[str, list[FileEntry]]] = []
    for top in sorted(provides):
        code = [e for e in entries if e.path.endswith(".py") and top_of(e.path) == top]
        if not code:
            continue
        if mode == "whole" or sum(e.length for e in code) <= split_above:
            groups.append((top, code))
            continue
        by_dir: dict[str, list[FileEntry]] = {}
        for entry in code:
            by_dir.setdefault(entry.path.rpartition("/")[0] or top, []).append(entry)
        for directory in sorted(by_dir):
            groups.append((directory.replace("/", ".")[:_MAX_LABEL], by_dir[directory]))
    return groups


def build_bundles(
    entries: Sequence[FileEntry],
    contents: Mapping[str, bytes],
    provides: Sequence[str],
    *,
    mode: str = "split",
    split_above: int = DEFAULT_SPLIT_ABOVE,
) -> Built:
    """The bundles of a release, compressed and content-addressed, in memory.

    Raises:
        ConfigError: an unknown mode or a negative ``split_above``.
    """
    if mode not in BUNDLE_MODES:
        raise ConfigError(
            "unknown bundle mode", check="bundles", expected=BUNDLE_MODES, got=repr(mode)
        )
    if type(split_above) is not int or split_above < 0:
        raise ConfigError(
            "the split threshold must be a number of bytes >= 0",
            check="bundles",
            got=repr(split_above),
        )
    if mode == "legacy":
        by_path = {e.path: e for e in entries}
        legacy: dict[str, bytes] = {}
        for top in provides:
            members = bundle_entries(by_path, top)
            if members:
                legacy[bundle_path(members, top)] = b"".join(contents[e.path] for e in members)
        return legacy, None
    files: dict[str, bytes] = {}
    listing: list[BundleEntry] = []
    for label, members in _groups(entries, provides, mode, split_above):
        bundle, data = make_bundle(label, [(e, contents[e.path]) for e in members])
        files[bundle.path] = data
        listing.append(bundle)
    return files, sorted(listing)


def write_bundles(out: Path, files: Mapping[str, bytes]) -> None:
    """Write built bundles under ``out`` (world-readable, like the site)."""
    for rel, data in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        os.chmod(target, 0o644)


def site_bundles(
    site: Path, manifest: Manifest, contents: Mapping[str, bytes]
) -> list[tuple[str, bytes]]:
    """The bundles of a signed site, to upload elsewhere: ``(path, bytes)``.

    ``contents``: the site's files, already verified against ``manifest``.
    Signed bundles are taken from the site as signed (zlib output may differ
    between builds) after the checks a consumer makes (hash, capped
    decompression, every member); the unsigned bundles of a manifest that
    lists none are rebuilt from the verified files.

    Raises:
        ConfigError: a listed bundle is missing or does not verify.
    """
    if manifest.bundles is None:
        rebuilt = []
        for top in manifest.provides:
            members = bundle_entries(manifest.files, top)
            if members:
                body = b"".join(contents[e.path] for e in members)
                rebuilt.append((bundle_path(members, top), body))
        return rebuilt
    found = []
    for bundle in manifest.bundles:
        path = site / bundle.path
        data = read_file(path)
        try:
            if data is None:
                raise ConfigError("missing from the site", check="site-verify", url=str(path))
            open_bundle(data, bundle, manifest.files, url=str(path))
        except SecureImportError as exc:
            raise ConfigError(
                f"a bundle the manifest lists does not verify; nothing was uploaded ({exc})",
                check="site-verify",
                url=str(path),
            ) from exc
        found.append((bundle.path, data))
    return found
