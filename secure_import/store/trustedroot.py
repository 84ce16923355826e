"""Reading the Sigstore trusted root a repository pins: a user's file or the shipped default.

Two sources only, both chosen by the user: the file named in the repository's
configuration (a private Sigstore deployment, or a public-good root the user
refreshed and reviewed), or, by default, the public-good instance's
``trusted_root.json`` that the installed sigstore-python wheel ships inside
its package (installed with, and as trusted as, the verifier code itself).
sigstore-python's per-user cache (``~/.local/share/sigstore``, which its
``offline=True`` mode reads without verification) is never read.
"""

from __future__ import annotations

import os
from importlib import resources

from secure_import.errors import ConfigError
from secure_import.verify.keyless import (
    MAX_TRUSTED_ROOT_BYTES,
    PinnedTrustedRoot,
    load_trusted_root,
    require_sigstore,
)

__all__ = ["PUBLIC_GOOD", "load_trusted_root_file", "shipped_trusted_root"]

#: The name a configuration uses for the shipped public-good trusted root.
PUBLIC_GOOD = "public-good"

_SHIPPED = ("_store", "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev", "trusted_root.json")


def load_trusted_root_file(path: str | os.PathLike[str]) -> PinnedTrustedRoot:
    """Read and parse the trusted root at ``path`` (a file the user pinned).

    Raises:
        ConfigError: sigstore is missing, or the file is unreadable, too large
            or not a Sigstore trusted root.
    """
    require_sigstore()
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TRUSTED_ROOT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            "cannot read the pinned Sigstore trusted root",
            check="trusted-root",
            got=f"{os.fspath(path)}: {exc.strerror or exc}",
        ) from exc
    return load_trusted_root(data, source=os.fspath(path))


def shipped_trusted_root() -> PinnedTrustedRoot:
    """The public-good instance's trusted root shipped inside the installed sigstore wheel.

    Upgrading sigstore-python updates it (new Fulcio or Rekor keys reach users
    with the package that needs them).

    Raises:
        ConfigError: sigstore is missing or its wheel has no trusted root.
    """
    require_sigstore()
    resource = resources.files("sigstore")
    for part in _SHIPPED:
        resource = resource / part
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise ConfigError(
            "the installed sigstore ships no public-good trusted root; pin one explicitly",
            check="trusted-root",
            got=str(exc),
        ) from exc
    return load_trusted_root(data, source=f"{PUBLIC_GOOD} (shipped with sigstore)")
