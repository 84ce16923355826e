"""Compiling verified source into code objects.

Today this compiles every time.  It is the single seam where a bytecode cache
bound to the verified source hash can be added without touching the finder.
"""

from __future__ import annotations

from types import CodeType

__all__ = ["compile_verified"]


def compile_verified(source: bytes, *, sha256: str, url: str) -> CodeType:
    """Compile ``source`` (already verified to hash to ``sha256``) with ``url`` as file name."""
    return compile(source, url, "exec", dont_inherit=True)
