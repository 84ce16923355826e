"""Signed dependency declarations (pure): which other repository, which
publisher and which versions a repository's code was built against.

A manifest of spec version 2 carries ``requires``: for each top-level name the
repository's code imports from *another* repository, where that name must
come from and what it must be::

    "requires": {
      "mpmath": {
        "repository": "https://mpmath.example/repo/",
        "publisher": {"keys": {"<key id>": {"keytype": "ed25519", "public": "<base64>"}},
                      "threshold": 1},
        "distribution": "mpmath", "versions": ">=1.1.0,<1.4"
      }
    }

Exactly one constraint per declaration: ``versions`` (a PEP 440 range over
the version of the ``NAME-VERSION.dist-info`` directory named by
``distribution`` in the dependency's own signed manifest), or
``manifest_versions`` (a range over the dependency's manifest version), or
``manifest_sha256`` (exactly one signed manifest envelope).  ``publisher`` is
an object so that other ways of naming a publisher (identities) can be added
in a later spec version; today it holds public keys and a threshold, so a key
id is always derived from key material, never claimed.

Invariants of :func:`parse_requires` and the checks:

- the table is strict: exactly the fields above, no unknown field at any
  level (P7), at most :data:`MAX_REQUIRES` entries, names that are top-level
  identifiers, not keywords, never-remote names (N2) or names the repository
  itself provides;
- a repository URL is https and is compared in its canonical spelling
  (:func:`~secure_import.verify.names.canonical_url`);
- a declaration never adds trust: :func:`check_publisher` and
  :func:`check_target` can only refuse (``DependencyError`` subclasses), and
  each message names the declaration and what the consumer actually has.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from secure_import.errors import (
    FormatError,
    PublisherMismatchError,
    SecureImportError,
    VersionRangeError,
)
from secure_import.verify import strictjson
from secure_import.verify.keys import PublicKey
from secure_import.verify.names import canonical_url, is_never_remote
from secure_import.verify.versions import SpecifierSet, Version, parse_version

if TYPE_CHECKING:
    from secure_import.verify.manifest import Manifest

__all__ = [
    "CONSTRAINTS",
    "MAX_REQUIRES",
    "Requirement",
    "check_publisher",
    "check_target",
    "dist_versions",
    "normalize_distribution",
    "parse_requires",
    "requires_to_json",
]

MAX_REQUIRES = 1000
MAX_PUBLISHER_KEYS = 16
KEY_TYPE = "ed25519"
#: The constraint fields; a declaration has exactly one of them.
CONSTRAINTS = ("versions", "manifest_versions", "manifest_sha256")
_ENTRY_REQUIRED = frozenset({"repository", "publisher"})
_PUBLISHER_FIELDS = frozenset({"keys", "threshold"})
_KEY_FIELDS = frozenset({"keytype", "public"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DISTRIBUTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")


def normalize_distribution(name: str) -> str:
    """PEP 503 normal form: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One signed declaration: ``name`` must come from ``repository``, signed
    by ``threshold`` of ``keys``, within the constraint."""

    name: str
    repository: str
    keys: tuple[PublicKey, ...]
    threshold: int = 1
    distribution: str | None = None
    versions: SpecifierSet | None = None
    manifest_versions: SpecifierSet | None = None
    manifest_sha256: str | None = None

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(key.key_id for key in self.keys)

    @property
    def constraint(self) -> str:
        """The accepted range as people read it (``mpmath >=1.1.0,<1.4``)."""
        if self.versions is not None:
            return f"{self.distribution} {self.versions}"
        if self.manifest_versions is not None:
            return f"manifest version {self.manifest_versions}"
        return f"manifest sha256 {self.manifest_sha256}"

    @property
    def publisher(self) -> str:
        ids = ", ".join(sorted(k[:16] for k in self.key_ids))
        return f"{self.threshold} of key(s) {ids}"

    def describe(self) -> str:
        """What the declaration says, for messages and audit records."""
        return f"{self.name} from {self.repository} (publisher {self.publisher}; {self.constraint})"

    def to_json(self) -> dict[str, object]:
        import base64

        entry: dict[str, object] = {
            "repository": self.repository,
            "publisher": {
                "keys": {
                    key.key_id: {"keytype": KEY_TYPE, "public": base64.b64encode(key.raw).decode()}
                    for key in self.keys
                },
                "threshold": self.threshold,
            },
        }
        if self.versions is not None:
            entry["distribution"] = self.distribution
            entry["versions"] = str(self.versions)
        elif self.manifest_versions is not None:
            entry["manifest_versions"] = str(self.manifest_versions)
        else:
            entry["manifest_sha256"] = self.manifest_sha256
        return entry


def _error(
    message: str, url: str | None, *, expected: object = None, got: object = None
) -> FormatError:
    return FormatError(
        f"manifest: requires: {message}", check="manifest", url=url, expected=expected, got=got
    )


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_keys(name: str, value: object, url: str | None) -> tuple[PublicKey, ...]:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_PUBLISHER_KEYS:
        raise _error(f"{name}: publisher keys must be an object with 1 to 16 entries", url)
    keys: list[PublicKey] = []
    for key_id in sorted(value):
        entry = value[key_id]
        if not isinstance(entry, dict) or set(entry) != _KEY_FIELDS:
            raise _error(f"{name}: key {_show(key_id)} must have exactly keytype and public", url)
        if entry["keytype"] != KEY_TYPE:
            raise _error(
                f"{name}: key {_show(key_id)} has an unsupported type",
                url,
                expected=KEY_TYPE,
                got=_show(entry["keytype"]),
            )
        raw = strictjson.b64decode_strict(
            entry["public"], what=f"requires key {_show(key_id)}", url=url
        )
        if len(raw) != 32:
            raise _error(f"{name}: key {_show(key_id)} is not 32 bytes", url, got=len(raw))
        key = PublicKey(raw)
        if key.key_id != key_id:
            raise _error(
                f"{name}: key id does not match the key material",
                url,
                expected=key.key_id,
                got=_show(key_id),
            )
        keys.append(key)
    return tuple(keys)


def _parse_entry(name: str, value: object, url: str | None) -> Requirement:
    if not isinstance(value, dict):
        raise _error(f"{name}: must be an object", url, got=_show(value))
    fields = set(value)
    constraints = [c for c in CONSTRAINTS if c in fields]
    allowed = _ENTRY_REQUIRED | set(CONSTRAINTS) | {"distribution"}
    if not _ENTRY_REQUIRED <= fields or fields - allowed or len(constraints) != 1:
        raise _error(
            f"{name}: wrong set of fields (repository, publisher and exactly one of "
            f"{', '.join(CONSTRAINTS)})",
            url,
            got=[_show(f, 40) for f in sorted(fields)[:10]],
        )
    if ("distribution" in fields) != ("versions" in fields):
        raise _error(f"{name}: distribution goes with versions, and only with it", url)
    repository = value["repository"]
    if not isinstance(repository, str):
        raise _error(f"{name}: repository must be a string", url, got=_show(repository))
    try:
        repository = canonical_url(repository)
    except SecureImportError as exc:
        raise _error(
            f"{name}: repository: {exc.detail}", url, got=_show(value["repository"])
        ) from exc
    publisher = value["publisher"]
    if not isinstance(publisher, dict) or set(publisher) != _PUBLISHER_FIELDS:
        raise _error(f"{name}: publisher must be an object with exactly keys and threshold", url)
    keys = _parse_keys(name, publisher["keys"], url)
    threshold = publisher["threshold"]
    if type(threshold) is not int or not 1 <= threshold <= len(keys):
        raise _error(
            f"{name}: publisher threshold must be an integer in 1..number of keys",
            url,
            expected=f"1..{len(keys)}",
            got=_show(threshold),
        )
    (kind,) = constraints
    try:
        if kind == "versions":
            distribution = value["distribution"]
            if not isinstance(distribution, str) or _DISTRIBUTION.fullmatch(distribution) is None:
                raise _error(
                    f"{name}: distribution is not a distribution name", url, got=_show(distribution)
                )
            return Requirement(
                name,
                repository,
                keys,
                threshold,
                distribution=distribution,
                versions=SpecifierSet.parse(value["versions"]),
            )
        if kind == "manifest_versions":
            return Requirement(
                name,
                repository,
                keys,
                threshold,
                manifest_versions=SpecifierSet.parse(value["manifest_versions"]),
            )
    except FormatError as exc:
        if exc.check == "manifest":
            raise
        raise _error(f"{name}: {kind}: {exc.detail}", url, got=exc.got) from exc
    digest = value["manifest_sha256"]
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        raise _error(
            f"{name}: manifest_sha256 must be 64 lowercase hex digits", url, got=_show(digest)
        )
    return Requirement(name, repository, keys, threshold, manifest_sha256=digest)


def parse_requires(
    value: object, *, provides: tuple[str, ...], url: str | None = None
) -> Mapping[str, Requirement]:
    """Parse the ``requires`` table of a verified manifest payload.

    Raises:
        FormatError: any field is missing, unknown, of the wrong type or out
            of bounds; the whole manifest is refused.
    """
    if not isinstance(value, dict) or not value:
        raise _error("must be a non-empty object (leave it out when there is nothing)", url)
    if len(value) > MAX_REQUIRES:
        raise _error(
            "too many declarations", url, expected=f"at most {MAX_REQUIRES}", got=len(value)
        )
    out: dict[str, Requirement] = {}
    for name in sorted(value):
        if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
            raise _error(
                "every declared name must be a top-level ASCII identifier", url, got=_show(name)
            )
        if is_never_remote(name):
            raise _error(f"{name!r} is never served remotely and cannot be declared", url)
        if name in provides:
            raise _error(f"{name!r} is provided by this repository itself", url)
        out[name] = _parse_entry(name, value[name], url)
    return MappingProxyType(out)


def requires_to_json(requires: Mapping[str, Requirement]) -> dict[str, object]:
    """The ``requires`` table for a manifest payload (inverse of :func:`parse_requires`)."""
    return {name: requires[name].to_json() for name in sorted(requires)}


# --- checks (refuse only) -----------------------------------------------------


def check_publisher(
    req: Requirement, *, key_ids: frozenset[str], what: str, declared_by: str, url: str | None
) -> None:
    """Refuse unless at least ``req.threshold`` of ``key_ids`` are declared keys.

    ``key_ids`` are either the keys the consumer pinned for the repository
    (``what="pinned"``) or the keys that signed the manifest in use
    (``what="signed by"``).

    Raises:
        PublisherMismatchError: naming the declared and the actual keys.
    """
    agreeing = len(req.key_ids & key_ids)
    if agreeing >= req.threshold:
        return
    shown = ", ".join(sorted(k[:16] for k in key_ids)) or "(none)"
    raise PublisherMismatchError(
        f"{declared_by} declares {req.name} from {req.repository} by publisher {req.publisher}, "
        f"but the consumer's repository for it is {what} key(s) {shown}",
        check="dependency-publisher",
        url=url,
        expected=req.publisher,
        got=f"{what} {shown}",
    )


def dist_versions(manifest: Manifest, distribution: str) -> list[str]:
    """Versions of ``distribution`` whose ``NAME-VERSION.dist-info`` the
    manifest lists (normally one)."""
    want = normalize_distribution(distribution)
    found = []
    for directory in manifest.dist_info_dirs():
        name, _, version = directory.removesuffix(".dist-info").partition("-")
        if normalize_distribution(name) == want:
            found.append(version)
    return found


def check_target(
    req: Requirement,
    *,
    manifest: Manifest,
    envelope_digest: str,
    declared_by: str,
    url: str | None,
) -> str:
    """Refuse unless the dependency's trusted manifest is inside the declared
    constraint; return the version in use as people read it.

    Raises:
        VersionRangeError: naming the declared range and the version found.
    """
    if req.manifest_sha256 is not None:
        if envelope_digest == req.manifest_sha256:
            return f"manifest {manifest.version} (sha256 {envelope_digest[:16]})"
        got = f"manifest {manifest.version} with sha256 {envelope_digest}"
    elif req.manifest_versions is not None:
        if req.manifest_versions.contains(Version(0, (manifest.version,))):
            return f"manifest {manifest.version}"
        got = f"manifest version {manifest.version}"
    else:
        assert req.versions is not None and req.distribution is not None
        versions = dist_versions(manifest, req.distribution)
        if len(versions) != 1:
            raise VersionRangeError(
                f"{declared_by} declares {req.name} as {req.constraint}, but the signed manifest "
                f"of {req.repository} lists {len(versions)} {req.distribution}-VERSION.dist-info "
                "directories, so the version in use cannot be checked",
                check="dependency-range",
                url=url,
                expected=f"one {req.distribution}-VERSION.dist-info",
                got=versions or "none",
            )
        try:
            version = parse_version(versions[0])
        except FormatError:
            version = None
        if version is not None and req.versions.contains(version):
            return f"{req.distribution} {versions[0]} (manifest {manifest.version})"
        got = f"{req.distribution} {versions[0]} (manifest {manifest.version})"
    raise VersionRangeError(
        f"{declared_by} declares {req.name} as {req.constraint}, but {req.repository} serves {got}",
        check="dependency-range",
        url=url,
        expected=req.constraint,
        got=got,
    )
