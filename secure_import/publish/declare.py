"""Dependency declarations as a publisher writes them: a small TOML file plus
the ``Requires-Dist`` lines of the tree's own ``.dist-info`` metadata.

The file (``secure-import sign --requires deps.toml``)::

    [requires.mpmath]                       # a top-level name the code imports
    repository = "https://mpmath.example/repo/"
    keys = ["keys/mpmath.pub"]              # its publisher's public key files
    threshold = 1                           # optional, default 1
    distribution = "mpmath"                 # optional, default: the name
    versions = ">=1.1.0,<1.4"               # optional: else from Requires-Dist
    # manifest_versions = ">=3"             # or a range of its manifest version
    # manifest_sha256 = "<64 hex>"          # or exactly one signed manifest

    [imports]
    local = ["numpy", "gmpy2"]              # imported, but from the consumer's
                                            # own environment (never a repository)

``Requires-Dist`` supplies the range when the table gives none: the entry
whose distribution name (PEP 503 normalised) matches ``distribution``.  It
cannot supply the repository or the publisher, which is why the table exists.
Entries under an ``extra`` marker are optional dependencies and ignored.
Paths are relative to the file's directory.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from secure_import.errors import ConfigError, FormatError, SecureImportError
from secure_import.store.keyfiles import load_public_key_file
from secure_import.verify.names import canonical_url, is_never_remote
from secure_import.verify.requires import Requirement, normalize_distribution
from secure_import.verify.versions import SpecifierSet

__all__ = ["Declarations", "read_declarations", "requires_dist"]

_ENTRY_KEYS = frozenset(
    {
        "repository",
        "keys",
        "threshold",
        "distribution",
        "versions",
        "manifest_versions",
        "manifest_sha256",
    }
)
_REQUIREMENT = re.compile(
    r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?:\((?P<paren>[^)]*)\)|(?P<bare>[^;(]*))\s*(?:;(?P<marker>.*))?"
)


@dataclass
class Declarations:
    """What a publisher declared for one signing."""

    requires: dict[str, Requirement] = field(default_factory=dict)
    #: Names the code imports from the consumer's environment, not a repository.
    local: frozenset[str] = frozenset()
    #: Where each range came from (``"deps.toml"`` or ``"Requires-Dist"``).
    sources: dict[str, str] = field(default_factory=dict)


def _fail(where: str, message: str, **kw: Any) -> ConfigError:
    return ConfigError(f"{where}: {message}", check="requires-file", **kw)


def requires_dist(files: Mapping[str, Path]) -> dict[str, str]:
    """Normalised distribution name -> range text, from the ``Requires-Dist``
    lines of every top-level ``.dist-info/METADATA`` in the tree (entries under
    an ``extra`` marker left out)."""
    found: dict[str, str] = {}
    for rel, path in sorted(files.items()):
        head, _, tail = rel.partition("/")
        if not head.endswith(".dist-info") or tail != "METADATA":
            continue
        headers = HeaderParser().parsestr(path.read_text("utf-8", "replace"))
        for line in headers.get_all("Requires-Dist") or []:
            match = _REQUIREMENT.fullmatch(line)
            if match is None:
                continue
            marker = match["marker"] or ""
            if re.search(r"\bextra\b", marker):
                continue
            spec = (match["paren"] if match["paren"] is not None else match["bare"] or "").strip()
            found[normalize_distribution(match["name"])] = spec
    return found


def read_declarations(path: Path | None, files: Mapping[str, Path]) -> Declarations:
    """Read the declarations file (if any) against the tree's metadata.

    Raises:
        ConfigError: unreadable or malformed file, unknown key, a key file that
            does not load, no range to be found, or a name that cannot be declared.
    """
    dist_ranges = requires_dist(files)
    if path is None:
        return Declarations()
    where = str(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(where, f"cannot read the declarations file: {exc}") from exc
    unknown = set(data) - {"requires", "imports"}
    if unknown:
        raise _fail(where, f"unknown table(s) {sorted(unknown)}; allowed: requires, imports")
    out = Declarations()
    imports = data.get("imports", {})
    if not isinstance(imports, dict) or set(imports) - {"local"}:
        raise _fail(where, "[imports] may only hold local = [names]")
    local = imports.get("local", [])
    if not isinstance(local, list) or not all(
        isinstance(n, str) and n.isidentifier() for n in local
    ):
        raise _fail(where, "imports.local must be a list of top-level names")
    out.local = frozenset(local)
    table = data.get("requires", {})
    if not isinstance(table, dict):
        raise _fail(where, "[requires] must be a table of names")
    for name, entry in sorted(table.items()):
        out.requires[name] = _entry(where, path.parent, name, entry, dist_ranges, out)
    clash = sorted(out.local & set(out.requires))
    if clash:
        raise _fail(where, f"{clash} are both declared and listed as local imports")
    return out


def _entry(
    where: str,
    base: Path,
    name: str,
    entry: object,
    dist_ranges: dict[str, str],
    out: Declarations,
) -> Requirement:
    key = f"requires.{name}"
    if not (name.isascii() and name.isidentifier()) or is_never_remote(name):
        raise _fail(where, f"{key}: not a name that can come from a repository")
    if not isinstance(entry, dict):
        raise _fail(where, f"{key}: must be a table")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise _fail(
            where, f"{key}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}"
        )
    for required in ("repository", "keys"):
        if required not in entry:
            raise _fail(where, f"{key}.{required} is required")
    try:
        repository = canonical_url(str(entry["repository"]))
    except SecureImportError as exc:
        raise _fail(where, f"{key}.repository: {exc.detail}") from exc
    key_files = entry["keys"]
    if isinstance(key_files, str):
        key_files = [key_files]
    if not isinstance(key_files, list) or not key_files:
        raise _fail(where, f"{key}.keys must list the publisher's public key files")
    keys = []
    for item in key_files:
        file = Path(str(item)).expanduser()
        keys.append(load_public_key_file(file if file.is_absolute() else base / file))
    unique = {k.key_id: k for k in keys}
    threshold = entry.get("threshold", 1)
    if type(threshold) is not int or not 1 <= threshold <= len(unique):
        raise _fail(where, f"{key}.threshold must be an integer in 1..{len(unique)}")
    given = [c for c in ("versions", "manifest_versions", "manifest_sha256") if c in entry]
    if len(given) > 1:
        raise _fail(where, f"{key}: give one of versions, manifest_versions, manifest_sha256")
    distribution = str(entry.get("distribution", name))
    common: dict[str, Any] = {
        "name": name,
        "repository": repository,
        "keys": tuple(unique[k] for k in sorted(unique)),
        "threshold": threshold,
    }
    try:
        if not given:
            spec = dist_ranges.get(normalize_distribution(distribution))
            if spec is None:
                raise _fail(
                    where,
                    f"{key}: no range given and the tree's .dist-info has no Requires-Dist "
                    f"for {distribution!r}; give versions, manifest_versions or manifest_sha256",
                )
            out.sources[name] = "Requires-Dist"
            return Requirement(
                **common,
                distribution=distribution,
                versions=SpecifierSet.parse(spec or ">=0"),
            )
        out.sources[name] = where
        (kind,) = given
        if kind == "versions":
            return Requirement(
                **common, distribution=distribution, versions=SpecifierSet.parse(entry[kind])
            )
        if kind == "manifest_versions":
            return Requirement(**common, manifest_versions=SpecifierSet.parse(entry[kind]))
    except FormatError as exc:
        raise _fail(where, f"{key}: {exc.detail} (got {exc.got})") from exc
    digest = entry["manifest_sha256"]
    if not isinstance(digest, str) or re.fullmatch(r"[0-9a-f]{64}", digest) is None:
        raise _fail(where, f"{key}.manifest_sha256 must be 64 lowercase hex digits")
    return Requirement(**common, manifest_sha256=digest)
