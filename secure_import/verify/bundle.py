"""Per-package bundles: one request for all modules of a cold package (pure).

A bundle holds no trust of its own.  Its name and layout are derived from the
signed manifest: the ``.py`` entries of one top-level package, sorted by path,
concatenated.  The consumer splits it by the signed lengths and checks every
piece's sha256, so a bundle can only ever deliver bytes the manifest signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from secure_import.config import BUNDLE_DIR
from secure_import.verify.manifest import FileEntry

__all__ = ["bundle_entries", "bundle_path"]


def bundle_entries(files: Mapping[str, FileEntry], top: str) -> list[FileEntry]:
    """The code entries of top-level package ``top``, in bundle order."""
    # Paths first: a repository may list many packages, and only this one's
    # entries need to be looked up (or built, for a memo's lazy table).
    prefix = f"{top}/"
    paths = [p for p in files if p.startswith(prefix) and p.endswith(".py")]
    if f"{top}.py" in files:
        paths.append(f"{top}.py")
    paths.sort()
    return [files[path] for path in paths]


def bundle_path(entries: list[FileEntry], top: str) -> str:
    """Repository-relative path of the bundle for ``entries`` (content-addressed,
    so a CDN can never serve a bundle of another version under this name)."""
    listing = "\n".join(f"{e.path} {e.sha256} {e.length}" for e in entries)
    digest = hashlib.sha256(listing.encode()).hexdigest()[:32]
    return f"{BUNDLE_DIR}/{top}.{digest}.bin"
