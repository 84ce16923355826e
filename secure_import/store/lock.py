"""Lock files: production mode pins the exact signed manifest of each repository.

A lock file records, per repository URL, the sha256 of the manifest envelope
the team reviewed (and so, through the signed hashes, every file).  In frozen
mode the finder accepts exactly that envelope: a new version, even one validly
signed by a stolen key, is refused (``lock-mismatch``) until the lock is
updated on purpose.

Format (JSON, written canonically so diffs are reviewable)::

    {"lock_version": 1,
     "repositories": {"https://host/repo/": {"manifest_sha256": "...",
                                             "manifest_version": 3}}}
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from secure_import._frozen import Frozen
from secure_import.errors import ConfigError, FormatError
from secure_import.verify import strictjson

__all__ = ["LockEntry", "locked_digest", "read_lock", "write_lock"]

_LOCK_VERSION = 1


class LockEntry(Frozen):
    """The manifest a lock file pins for one repository."""

    _fields = ("url", "manifest_sha256", "manifest_version")
    __slots__ = _fields

    url: str
    manifest_sha256: str
    manifest_version: int

    def __init__(self, url: str, manifest_sha256: str, manifest_version: int) -> None:
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "manifest_sha256", manifest_sha256)
        object.__setattr__(self, "manifest_version", manifest_version)


def read_lock(path: str | os.PathLike[str]) -> dict[str, LockEntry]:
    """Parse a lock file strictly.

    Raises:
        ConfigError: missing or unreadable.
        FormatError: malformed (unknown fields, wrong types, bad digests).
    """
    lock_path = os.fspath(path)
    try:
        with open(lock_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the lock file: {exc}", check="lock-file", got=lock_path
        ) from exc
    doc = strictjson.loads(data, what="lock file", url=lock_path)
    if not isinstance(doc, dict) or set(doc) != {"lock_version", "repositories"}:
        raise FormatError(
            "a lock file has exactly lock_version and repositories",
            check="lock-schema",
            url=lock_path,
        )
    if doc["lock_version"] != _LOCK_VERSION or not isinstance(doc["repositories"], dict):
        raise FormatError(
            "unsupported lock file",
            check="lock-schema",
            url=lock_path,
            expected=_LOCK_VERSION,
            got=doc["lock_version"],
        )
    entries: dict[str, LockEntry] = {}
    for url, entry in doc["repositories"].items():
        if (
            not isinstance(entry, dict)
            or set(entry) != {"manifest_sha256", "manifest_version"}
            or not isinstance(entry["manifest_sha256"], str)
            or len(entry["manifest_sha256"]) != 64
            or any(c not in "0123456789abcdef" for c in entry["manifest_sha256"])
            or type(entry["manifest_version"]) is not int
        ):
            raise FormatError("malformed lock entry", check="lock-schema", url=lock_path, got=url)
        entries[url] = LockEntry(url, entry["manifest_sha256"], entry["manifest_version"])
    return entries


def locked_digest(path: str | os.PathLike[str], url: str) -> str:
    """The manifest digest the lock file at ``path`` pins for repository ``url``.

    Raises:
        ConfigError: unreadable, or ``url`` is not in it (frozen mode admits
            no repository the lock does not name).
        FormatError: malformed.
    """
    entry = read_lock(path).get(url)
    if entry is None:
        raise ConfigError(
            "frozen mode: this repository is not in the lock file",
            check="lock",
            url=url,
            got=os.fspath(path),
        )
    return entry.manifest_sha256


def write_lock(path: str | os.PathLike[str], pins: Iterable[LockEntry]) -> dict[str, LockEntry]:
    """Pin each repository's verified manifest in ``path`` (written atomically).

    ``pins`` come from :meth:`secure_import.repository.Repository.lock_entry`,
    which fetches and verifies the manifest: gather them all before calling,
    so that nothing is written when one repository does not verify.

    Raises:
        ConfigError: two pins for one URL that disagree.
        TypeError: a pin is not a :class:`LockEntry` (a repository given as before).
        OSError: the file cannot be written.
    """
    from secure_import.store.fsutil import atomic_write

    entries: dict[str, LockEntry] = {}
    for pin in pins:
        if not isinstance(pin, LockEntry):
            raise TypeError(
                f"write_lock takes LockEntry pins (Repository.lock_entry()), "
                f"not {type(pin).__name__}"
            )
        if entries.get(pin.url, pin) != pin:
            raise ConfigError(
                "two different manifests pinned for one repository",
                check="lock",
                url=pin.url,
                expected=entries[pin.url].manifest_sha256,
                got=pin.manifest_sha256,
            )
        entries[pin.url] = pin
    doc = {
        "lock_version": _LOCK_VERSION,
        "repositories": {
            url: {"manifest_sha256": e.manifest_sha256, "manifest_version": e.manifest_version}
            for url, e in sorted(entries.items())
        },
    }
    lock_path = os.fspath(path)
    atomic_write(lock_path, strictjson.dumps_canonical(doc) + b"\n")
    os.chmod(lock_path, 0o644)
    return entries
