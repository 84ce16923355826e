"""Building a signed repository from a source tree (the publisher's side).

The output directory is a static site any HTTPS server can host as-is: every
file at its relative path plus the signed manifest envelope at the root.  The
publisher applies the same path rules the consumer enforces (shared code in
:mod:`.manifest`), so a tree that signs is a tree that imports.

Refused while walking the source: compiled or magic files (``.so``, ``.pyd``,
``.pyc``, ``.pth``, ...), symlinks that leave the source tree, namespace
packages (a top-level folder without ``__init__.py``), stray files at the top
level, and any name the manifest rules refuse.  Skipped: ``__pycache__``, VCS
folders and dotfiles.

Dependencies: the code's imports are read statically
(:mod:`secure_import.publish.imports`); a name imported without a ``try``
that copes with its absence must be provided by the tree, declared as a
dependency on another signed repository (:mod:`secure_import.publish.declare`,
signed into the manifest as ``requires``), or listed as a local import (the
consumer's own environment).  Anything else is refused before signing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.config import (
    BUNDLE_DIR,
    DEFAULT_EXPIRES_IN,
    MANIFEST_NAME,
    MANIFEST_PAYLOAD_NAME,
    SIGSTORE_BUNDLE_NAME,
)
from secure_import.errors import ConfigError, FormatError, UnsafePathError
from secure_import.publish.bundles import DEFAULT_SPLIT_ABOVE, build_bundles, write_bundles
from secure_import.publish.declare import read_declarations
from secure_import.publish.imports import scan_imports
from secure_import.store.fsutil import atomic_write
from secure_import.verify import envelope, manifest
from secure_import.verify import root as rootmod
from secure_import.verify.manifest import FileEntry, Manifest
from secure_import.verify.names import is_never_remote
from secure_import.verify.pointer import POINTER_NAME, make_pointer

__all__ = [
    "PublishResult",
    "current_root",
    "init_root",
    "publish",
    "read_unverified_manifest",
    "rotate_root",
]

_SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".bzr", "_darcs", ".tox", ".nox"})
_REFUSED_SUFFIXES = (".so", ".pyd", ".pyc", ".pyo", ".pth", ".dll", ".dylib", ".exe")


@dataclass
class PublishResult:
    manifest: Manifest
    out_dir: Path
    skipped: list[str] = field(default_factory=list)
    #: Names imported only where the code copes with their absence, neither
    #: provided nor declared: not signed as dependencies (``name -> [file:line]``).
    optional_imports: dict[str, list[str]] = field(default_factory=dict)
    #: ``.py`` files the import scan could not parse.
    unparsed: list[str] = field(default_factory=list)
    #: Where each declaration's range came from (file or ``Requires-Dist``).
    requires_sources: dict[str, str] = field(default_factory=dict)


def read_unverified_manifest(out_dir: Path) -> Manifest | None:
    """The manifest already in ``out_dir``, parsed *without* verification.

    Only the publisher's own output is read this way, to number the next
    version and to remove files the new version no longer lists.
    """
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    import base64
    import json

    try:
        env = json.loads(path.read_bytes())
        return manifest.parse(base64.b64decode(env["payload"]))
    except (ValueError, KeyError, TypeError, FormatError, UnsafePathError) as exc:
        raise ConfigError(
            f"the existing manifest in the output directory is unreadable: {exc}",
            check="existing-manifest",
            got=str(path),
        ) from exc


def _collect(src: Path) -> tuple[dict[str, Path], list[str]]:
    """Relative POSIX path -> real file, for every file to publish."""
    src_real = src.resolve()
    files: dict[str, Path] = {}
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(src)
        keep_dirs = []
        for name in sorted(dirnames):
            if name in _SKIP_DIRS or name.startswith("."):
                skipped.append((rel_dir / name).as_posix() + "/")
                continue
            full = here / name
            if full.is_symlink():
                _check_inside(full, src_real)
            keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            full = here / name
            rel = (rel_dir / name).as_posix()
            if name.startswith("."):
                skipped.append(rel)
                continue
            if name.lower().endswith(_REFUSED_SUFFIXES) or ".cpython-" in name:
                raise UnsafePathError(
                    "compiled or start-up-hook files cannot be published",
                    check="file-type",
                    expected="pure-Python .py files and data files",
                    got=rel,
                )
            if full.is_symlink():
                _check_inside(full, src_real)
            if not full.is_file():
                raise UnsafePathError("not a regular file", check="file-type", got=rel)
            files[rel] = full
    return files, skipped


def _check_inside(path: Path, root: Path) -> None:
    target = path.resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(
            "a symlink leaves the source tree",
            check="symlink",
            expected=f"inside {root}",
            got=f"{path} -> {target}",
        )


def _top_level_names(files: dict[str, Path]) -> list[str]:
    provides: set[str] = set()
    for rel in files:
        first, sep, _ = rel.partition("/")
        if first.endswith(".dist-info") and sep:
            continue
        if not sep:
            if not first.endswith(".py"):
                raise UnsafePathError(
                    "only modules, packages and .dist-info folders may stand at the top level",
                    check="top-level",
                    got=rel,
                )
            provides.add(first[:-3])
        else:
            if f"{first}/__init__.py" not in files:
                raise UnsafePathError(
                    "top-level folders must be regular packages with an __init__.py "
                    "(namespace packages are not supported)",
                    check="top-level",
                    got=first + "/",
                )
            provides.add(first)
    for name in provides:
        if is_never_remote(name):
            raise UnsafePathError(
                "this name is never served remotely",
                check="namespace",
                got=name,
            )
    if not provides:
        raise ConfigError(
            "the source directory has no module or package to publish", check="source"
        )
    return sorted(provides)


def publish(
    src: Path,
    out: Path,
    *,
    private_keys: Sequence[Ed25519PrivateKey],
    version: int | None = None,
    expires_in: timedelta = DEFAULT_EXPIRES_IN,
    root_version: int | None = None,
    now: datetime | None = None,
    requires: Path | None = None,
    local_imports: Iterable[str] = (),
    sigstore_sign: Callable[[bytes], bytes] | None = None,
    bundles: str = "split",
    split_above: int = DEFAULT_SPLIT_ABOVE,
) -> PublishResult:
    """Sign ``src`` into the static repository ``out``.

    ``requires`` is the declarations file (see
    :mod:`secure_import.publish.declare`); ``local_imports`` adds names the
    code imports from the consumer's own environment.

    ``sigstore_sign`` signs keylessly: it receives the manifest payload and
    returns a Sigstore bundle over it (see
    :mod:`secure_import.publish.keyless`), written as
    :data:`~secure_import.config.SIGSTORE_BUNDLE_NAME`; with no private key
    the envelope then carries no key signature.  Every publish also writes
    the payload as :data:`~secure_import.config.MANIFEST_PAYLOAD_NAME` (what
    ``sigstore sign`` and ``sigstore verify`` take) and removes a bundle left
    from the previous version.

    ``bundles`` and ``split_above``: how modules are grouped into signed,
    compressed bundles (see :mod:`secure_import.publish.bundles`); with
    ``bundles="legacy"`` the manifest lists none (spec version 1 or 2) and
    the earlier unsigned bundles are written, for consumers that predate
    spec version 3.

    Raises:
        UnsafePathError: a file or name the consumer would refuse.
        ConfigError: bad arguments, ``out`` is not a repository we made, a
            bad declarations file, or the code imports a name that is neither
            provided, declared nor local (nothing is written).
    """
    if not private_keys and sigstore_sign is None:
        raise ConfigError("at least one signing key (or Sigstore) is required", check="keys")
    if not src.is_dir():
        raise ConfigError("the source directory does not exist", check="source", got=str(src))
    if expires_in <= timedelta(0):
        raise ConfigError("expiry must be in the future", check="expires-in", got=str(expires_in))
    src = src.resolve()
    out = out.resolve()
    if out == src or src in out.parents:
        raise ConfigError(
            "the output directory must not be inside the source", check="out", got=str(out)
        )
    previous = read_unverified_manifest(out) if out.exists() else None
    if out.exists() and previous is None and any(out.iterdir()):
        raise ConfigError(
            "the output directory is not empty and holds no secure-import repository; "
            "refusing to write into it",
            check="out",
            got=str(out),
        )
    if version is None:
        version = previous.version + 1 if previous is not None else 1
    elif previous is not None and version <= previous.version:
        raise ConfigError(
            "the version must increase (consumers refuse a rollback)",
            check="version",
            expected=f"> {previous.version}",
            got=version,
        )

    if root_version is None:
        existing = current_root(out) if out.exists() else None
        root_version = existing.version if existing is not None else 1
    files, skipped = _collect(src)
    provides = _top_level_names(files)
    declarations = read_declarations(requires, files)
    own = sorted(set(declarations.requires) & set(provides))
    if own:
        raise ConfigError(
            f"{', '.join(own)}: provided by this tree, so it cannot also be a dependency",
            check="requires-file",
            got=str(requires),
        )
    contents: dict[str, bytes] = {rel: path.read_bytes() for rel, path in files.items()}
    scan = scan_imports(contents)
    undeclared, optional = scan.outside(
        [*provides, *declarations.requires, *declarations.local, *local_imports]
    )
    if undeclared:
        shown = "; ".join(
            f"{name} ({', '.join(where[:3])}{', ...' if len(where) > 3 else ''})"
            for name, where in undeclared.items()
        )
        raise ConfigError(
            "the code imports names that this tree does not provide and that are not "
            f"declared: {shown}.  Declare each as a dependency on its signed repository "
            "([requires.NAME] in a --requires file) or, if the consumer's own environment "
            "provides it, list it under [imports] local (or --local-import NAME)",
            check="undeclared-imports",
            expected="provided, declared or local",
            got=", ".join(undeclared),
        )
    entries = [
        FileEntry(path=rel, sha256=hashlib.sha256(data).hexdigest(), length=len(data))
        for rel, data in sorted(contents.items())
    ]
    bundle_files, listing = build_bundles(
        entries, contents, provides, mode=bundles, split_above=split_above
    )
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    payload = manifest.build_payload(
        version=version,
        root_version=root_version,
        issued=issued,
        expires=issued + expires_in,
        provides=provides,
        files=entries,
        requires=declarations.requires,
        bundles=listing,
    )
    if private_keys:
        signed = envelope.sign(payload, envelope.MANIFEST_PAYLOAD_TYPE, list(private_keys))
    else:
        signed = envelope.wrap_unsigned(payload, envelope.MANIFEST_PAYLOAD_TYPE)
    sigstore_bundle = None if sigstore_sign is None else sigstore_sign(payload)

    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        for old in previous.files:
            if old not in contents:
                target = out / old
                if target.is_file() and not target.is_symlink():
                    target.unlink()
    for rel, data in contents.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_dir():
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        atomic_write(target, data)
        os.chmod(target, 0o644)
    bundle_dir = out / BUNDLE_DIR
    if bundle_dir.is_dir() and not bundle_dir.is_symlink():
        shutil.rmtree(bundle_dir)
    bundle_dir.mkdir()
    write_bundles(out, bundle_files)
    bundle_file = out / SIGSTORE_BUNDLE_NAME
    if sigstore_bundle is not None:
        atomic_write(bundle_file, sigstore_bundle)
        os.chmod(bundle_file, 0o644)
    elif bundle_file.is_file() or bundle_file.is_symlink():
        bundle_file.unlink()  # it signed the previous version's payload
    payload_file = out / MANIFEST_PAYLOAD_NAME
    atomic_write(payload_file, payload)
    os.chmod(payload_file, 0o644)
    manifest_path = out / MANIFEST_NAME
    atomic_write(manifest_path, signed)
    os.chmod(manifest_path, 0o644)
    # After the manifest: a client that sees the new pointer finds the new
    # manifest (a client that sees the old one fetches the manifest in full).
    pointer_path = out / POINTER_NAME
    atomic_write(pointer_path, make_pointer(signed, version))
    os.chmod(pointer_path, 0o644)
    return PublishResult(
        manifest.parse(payload),
        out,
        skipped,
        optional_imports=optional,
        unparsed=scan.unparsed,
        requires_sources=declarations.sources,
    )


# -- trust roots (key rotation and revocation) -------------------------------

DEFAULT_ROOT_EXPIRES_IN = timedelta(days=5 * 365)


def current_root(out: Path) -> rootmod.Root | None:
    """The newest root published in ``out`` (parsed, not verified: our own output)."""
    directory = out / rootmod.ROOTS_DIR
    if not directory.is_dir():
        return None
    versions = sorted(int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit())
    if not versions:
        return None
    return _read_root(directory / f"{versions[-1]}.json")


def _read_root(path: Path) -> rootmod.Root:
    import base64
    import json

    try:
        env = json.loads(path.read_bytes())
        return rootmod.parse(base64.b64decode(env["payload"]))
    except (ValueError, KeyError, TypeError, FormatError, UnsafePathError) as exc:
        raise ConfigError(
            f"unreadable root document: {exc}", check="root-file", got=str(path)
        ) from exc


def _write_root(out: Path, new: rootmod.Root, signers: Sequence[Ed25519PrivateKey]) -> Path:
    payload = rootmod.build_payload(new)
    signed = envelope.sign(payload, envelope.ROOT_PAYLOAD_TYPE, list(signers))
    directory = out / rootmod.ROOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{new.version}.json"
    if target.exists():
        raise ConfigError(
            "that root version already exists; roots are never rewritten",
            check="root-version",
            got=str(target),
        )
    atomic_write(target, signed)
    os.chmod(target, 0o644)
    return target


def init_root(
    out: Path,
    *,
    private_keys: Sequence[Ed25519PrivateKey],
    threshold: int = 1,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRES_IN,
    now: datetime | None = None,
) -> rootmod.Root:
    """Publish root version 1: the keys consumers pin, and the threshold.

    Raises:
        ConfigError: a root already exists, or the threshold is impossible.
    """
    from secure_import.verify.keys import public_key_of

    if current_root(out) is not None:
        raise ConfigError(
            "this repository already has a trust root; use rotate", check="root-init", got=str(out)
        )
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    first = rootmod.Root.from_keys(
        [public_key_of(k) for k in private_keys],
        threshold,
        version=1,
        expires=issued + expires_in,
    )
    _write_root(out, first, private_keys)
    return first


def rotate_root(
    out: Path,
    *,
    old_keys: Sequence[Ed25519PrivateKey],
    new_keys: Sequence[Ed25519PrivateKey],
    threshold: int = 1,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRES_IN,
    now: datetime | None = None,
) -> rootmod.Root:
    """Publish root N+1 with ``new_keys``, signed by the old and the new keys.

    Revoking a key is a rotation whose ``new_keys`` leave it out.  When the
    repository has no root document yet, root 1 is taken to be ``old_keys``
    with threshold 1 (what consumers pinned with ``keys=``).

    Raises:
        ConfigError: the old keys are not a threshold of the current root.
    """
    from secure_import.verify.keys import public_key_of

    current = current_root(out)
    if current is None:
        current = rootmod.Root.from_keys([public_key_of(k) for k in old_keys], 1, version=1)
        _write_root(out, current, old_keys)
    held = {public_key_of(k).raw for k in old_keys}
    if sum(1 for k in current.keys if k.raw in held) < current.threshold:
        raise ConfigError(
            f"a rotation must be signed by {current.threshold} of root {current.version}'s keys",
            check="root-rotate",
            expected=current.threshold,
            got=sum(1 for k in current.keys if k.raw in held),
        )
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    new = rootmod.Root.from_keys(
        [public_key_of(k) for k in new_keys],
        threshold,
        version=current.version + 1,
        expires=issued + expires_in,
    )
    signers = {public_key_of(k).raw: k for k in [*old_keys, *new_keys]}
    _write_root(out, new, list(signers.values()))
    return new
