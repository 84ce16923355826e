"""Turning what a user pins (key files, keys, Sigstore identities) into the root trust starts from.

The one place that reads pinned key files and the pinned Sigstore trusted root
for a repository.  The extra ``secure-import[sigstore]`` is needed, and
sigstore-python imported, only when an identity is pinned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from secure_import.errors import ConfigError
from secure_import.store.keyfiles import load_public_key_file
from secure_import.verify.keys import PublicKey
from secure_import.verify.root import Root

# The Sigstore modules (identity pins, trusted roots) are imported only when a
# repository pins an identity: a key-only process never loads them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.verify.identity import Identity
    from secure_import.verify.keyless import PinnedTrustedRoot

__all__ = ["KeySpec", "PublisherSpec", "TrustedRootSpec", "pinned_root", "sigstore_root"]

KeySpec = str | os.PathLike[str] | PublicKey
if TYPE_CHECKING:
    #: A pinned publisher: a public key (file or loaded) or a Sigstore identity.
    PublisherSpec = KeySpec | Identity
    #: ``"public-good"`` (the default), a trusted_root.json path, or a loaded root.
    TrustedRootSpec = str | os.PathLike[str] | PinnedTrustedRoot
else:
    # Annotation-only aliases: at run time the names exist (they are
    # exported) without importing the Sigstore modules.
    PublisherSpec = TrustedRootSpec = object


def _load_key(item: object) -> PublicKey:
    if isinstance(item, PublicKey):
        return item
    if isinstance(item, str | os.PathLike):
        return load_public_key_file(item)
    raise ConfigError(
        "publishers are public key files, loaded PublicKey objects or SigstoreIdentity pins",
        check="keys",
        got=type(item).__name__,
    )


def sigstore_root(spec: TrustedRootSpec | None) -> PinnedTrustedRoot:
    """The Sigstore trusted root named by ``spec`` (``None``: the public-good one).

    Raises:
        ConfigError: sigstore is not installed, or the root is unusable.
    """
    from secure_import.store.trustedroot import (
        PUBLIC_GOOD,
        load_trusted_root_file,
        shipped_trusted_root,
    )
    from secure_import.verify.keyless import PinnedTrustedRoot

    if isinstance(spec, PinnedTrustedRoot):
        return spec
    if spec is None or spec == PUBLIC_GOOD:
        return shipped_trusted_root()
    return load_trusted_root_file(spec)


def pinned_root(
    *,
    keys: Iterable[KeySpec] = (),
    publishers: Iterable[PublisherSpec] = (),
    threshold: int = 1,
    root_version: int = 1,
    sigstore_trusted_root: TrustedRootSpec | None = None,
) -> Root:
    """The root a repository's trust starts from: keys and identities, one threshold.

    Raises:
        ConfigError, KeyFileError: no publisher, an unreadable key, a bad
            threshold, a trusted root without identities, or (identities
            pinned) sigstore missing or the trusted root unusable.
    """
    loaded: list[PublicKey] = [_load_key(item) for item in keys]
    identities: list[Identity] = []
    publishers = list(publishers)
    if publishers:
        from secure_import.verify.identity import Identity
    for item in publishers:
        if isinstance(item, Identity):
            identities.append(item)
        else:
            loaded.append(_load_key(item))
    if not loaded and not identities:
        raise ConfigError(
            "at least one pinned publisher (a key or a Sigstore identity) is required",
            check="keys",
        )
    if not identities:
        if sigstore_trusted_root is not None:
            raise ConfigError(
                "a Sigstore trusted root is pinned but no Sigstore identity",
                check="trusted-root",
            )
        return Root.from_keys(loaded, threshold, version=root_version)
    return Root.from_keys(
        loaded,
        threshold,
        version=root_version,
        identities=identities,
        sigstore_root=sigstore_root(sigstore_trusted_root),
    )


def describe_publishers(root: Root) -> Sequence[str]:
    """One line per pinned publisher (``key <id>`` / ``sigstore <pin>``), for reports."""
    return [
        *(f"key {key.key_id}" for key in root.keys),
        *(f"sigstore {pin.describe()}" for pin in root.identities),
    ]
