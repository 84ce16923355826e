"""Per-package bundles: one request for all modules of a cold package (pure).

A bundle holds no trust of its own.  Its name and layout are derived from the
signed manifest: the ``.py`` entries of one top-level package, sorted by path,
concatenated.  The consumer splits it by the signed lengths and checks every
piece's sha256, so a bundle can only ever deliver bytes the manifest signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .config import BUNDLE_DIR
from .manifest import FileEntry

__all__ = ["bundle_entries", "bundle_path"]


def bundle_entries(files: Mapping[str, FileEntry], top: str) -> list[FileEntry]:
    """The code entries of top-level package ``top``, in bundle order."""
    return [
        entry
        for path, entry in sorted(files.items())
        if path.endswith(".py") and (path == f"{top}.py" or path.startswith(f"{top}/"))
    ]


def bundle_path(entries: list[FileEntry], top: str) -> str:
    """Repository-relative path of the bundle for ``entries`` (content-addressed,
    so a CDN can never serve a bundle of another version under this name)."""
    listing = "\n".join(f"{e.path} {e.sha256} {e.length}" for e in entries)
    digest = hashlib.sha256(listing.encode()).hexdigest()[:32]
    return f"{BUNDLE_DIR}/{top}.{digest}.bin"
