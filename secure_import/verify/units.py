"""Which modules are verified together: the *unit* of a module (pure).

A unit is verified whole before any of its modules runs, and is the
granularity of fetching, caching and bytecode packs
(:mod:`secure_import.assembly`):

- for a manifest that lists bundles (spec version 3), the members of the
  signed bundle that carries the module (a whole small package, or one
  package directory of a large one), or the module alone if no bundle
  carries it;
- for a manifest that lists none (spec versions 1 and 2), the whole
  top-level package, as before bundles were signed.
"""

from __future__ import annotations

from collections.abc import Mapping

from secure_import._frozen import Frozen
from secure_import.verify.bundle import (
    BundleEntry,
    bundle_entries,
    bundle_path,
    open_bundle,
    open_unsigned_bundle,
    top_of,
)
from secure_import.verify.entries import FileEntry
from secure_import.verify.manifest import Manifest

__all__ = ["Unit", "open_fetched", "unit_bundle", "unit_key", "unit_of"]


class Unit(Frozen):
    """Modules verified together (see the module docstring)."""

    _fields = ("key", "entries", "bundle", "legacy")
    __slots__ = _fields
    _unhashed = frozenset({"entries"})

    #: The bundle's path, the lone module's path, or the top-level name
    #: (manifests that list no bundles).
    key: str
    entries: list[FileEntry]
    #: The signed bundle carrying the unit, if any.
    bundle: BundleEntry | None
    #: A manifest listing no bundles: the earlier unsigned bundle may be fetched.
    legacy: bool

    def __init__(
        self, key: str, entries: list[FileEntry], bundle: BundleEntry | None, legacy: bool
    ) -> None:
        init = object.__setattr__
        init(self, "key", key)
        init(self, "entries", entries)
        init(self, "bundle", bundle)
        init(self, "legacy", legacy)


def unit_key(manifest: Manifest, entry: FileEntry) -> str:
    """The key of the unit of module ``entry`` (cheap: no list is built)."""
    if manifest.bundles is None:
        return top_of(entry.path)
    bundle = manifest.bundle_of(entry.path)
    return entry.path if bundle is None else bundle.path


def unit_of(manifest: Manifest, entry: FileEntry) -> Unit:
    """The unit of module ``entry`` in ``manifest``."""
    if manifest.bundles is None:
        top = top_of(entry.path)
        return Unit(top, bundle_entries(manifest.files, top), None, True)
    bundle = manifest.bundle_of(entry.path)
    if bundle is None:
        return Unit(entry.path, [entry], None, False)
    return Unit(bundle.path, [manifest.files[m] for m in bundle.members], bundle, False)


def unit_bundle(unit: Unit) -> tuple[str, int, str] | None:
    """Where ``unit``'s bundle is: ``(path, byte cap, description)``, or None
    if no bundle carries it (a lone module)."""
    if unit.bundle is not None:
        return unit.bundle.path, unit.bundle.length, "signed bundle"
    if not unit.legacy:
        return None
    cap = sum(e.length for e in unit.entries)
    return bundle_path(unit.entries, unit.key), cap, "package bundle"


def open_fetched(
    unit: Unit, data: bytes, files: Mapping[str, FileEntry], *, url: str
) -> dict[str, bytes]:
    """The verified member bytes of ``unit``'s fetched bundle, by path: a
    signed bundle by :func:`~secure_import.verify.bundle.open_bundle` (hash
    of the compressed bytes first, then a capped decompression), an unsigned
    one by :func:`~secure_import.verify.bundle.open_unsigned_bundle`."""
    if unit.bundle is not None:
        return open_bundle(data, unit.bundle, files, url=url)
    return open_unsigned_bundle(data, unit.entries, url=url)
