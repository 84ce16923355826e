"""Byte checks against a signed manifest entry (pure)."""

from __future__ import annotations

import hashlib

from secure_import.errors import (
    HashMismatchError,
    LengthMismatchError,
)
from secure_import.verify.entries import FileEntry


def verify_bytes(data: bytes, entry: FileEntry, *, url: str) -> None:
    """Check length then sha256 of ``data`` against its signed entry (pure).

    Raises:
        LengthMismatchError, HashMismatchError.
    """
    if len(data) != entry.length:
        raise LengthMismatchError(
            f"{entry.path} does not have its signed length",
            check="length",
            url=url,
            expected=f"{entry.length} bytes",
            got=f"{len(data)} bytes",
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise HashMismatchError(
            f"{entry.path} does not match its signed sha256",
            check="sha256",
            url=url,
            expected=entry.sha256,
            got=digest,
        )
