"""Dependencies between signed repositories, end to end over loopback HTTPS:
two publishers (``symx`` imports ``mpx``), a third one that attacks.

Each refusal is checked for the THREATS.md post-conditions: the error class
and code, the declaring package's code did not run (canary), the audit log
names the refusal (and, for accepted edges, the declaration that allowed the
load).  THREATS ids: M3 (a publisher scoped to its repository), M8 (rollback
and ranges), N1/N3 (names served only by the repository allowed to serve
them; a failure never falls through), T1 (https only, in declarations too).
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME
from secure_import.errors import (
    ConfigError,
    DependencyConflictError,
    DependencyError,
    LockMismatchError,
    PublisherMismatchError,
    UndeclaredImportError,
    VersionRangeError,
)
from secure_import.hook.deps import walk
from secure_import.hook.finder import get_finder
from secure_import.store.audit import AuditLog
from secure_import.store.cache import Cache
from secure_import.store.keyfiles import load_public_key_file
from secure_import.store.lock import read_lock, write_lock
from secure_import.store.paths import Paths

from ..conftest import Publisher, canary_code, forget_remote_modules
from ..httpsrig import TLSServerFactory


@pytest.fixture
def pubs(tmp_path: Path, rig: TLSServerFactory) -> Iterator[dict[str, Publisher]]:
    made = {name: Publisher(tmp_path, rig, name) for name in ("sym", "mp", "evil")}
    try:
        yield made
    finally:
        for pub in made.values():
            pub.close()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(
        cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", log_dir=tmp_path / "log"
    )


def publish_mp(pub: Publisher, version: str = "1.3.0", name: str = "mpx") -> None:
    for old in pub.src.glob("*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    pub.write(f"{name}/__init__.py", f"VERSION = {version!r}\n")
    pub.write("mpextra.py", "EXTRA = True\n")
    pub.write(f"{name}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
    pub.publish()


def publish_sym(
    pub: Publisher,
    target: Publisher,
    canary: Path,
    *,
    key: Path | None = None,
    constraint: str = 'versions = ">=1.1,<1.4"',
    name: str = "symx",
    imports: str = "mpx",
    declare: bool = True,
    **more: Any,
) -> None:
    pub.write(
        f"{name}/__init__.py",
        canary_code(canary) + f"import {imports}\nDEP = {imports}.VERSION\n",
    )
    deps = pub.tmp / f"{pub.src.name}-deps.toml"
    deps.write_text(
        textwrap.dedent(
            f"""
            [requires.{imports}]
            repository = "{target.url}"
            keys = ["{key or target.pub_path}"]
            {constraint}
            """
        )
        if declare
        else ""
    )
    pub.publish(requires=deps, local_imports=[] if declare else [imports], **more)


def add(pub: Publisher, paths: Paths, **kw: Any) -> secure_import.Repository:
    kw.setdefault("keys", [pub.pub_path])
    return secure_import.add_repo(pub.url, ca_bundle=pub.rig.ca_pem_path, paths=paths, **kw)


def new_process() -> None:
    for repo in list(get_finder().repositories):
        secure_import.remove_repo(repo)
    forget_remote_modules()


def records(paths: Paths, event: str) -> list[dict[str, Any]]:
    return [r for r in AuditLog(paths.audit_log).records() if r["event"] == event]


def refused(exc_type: type[DependencyError], code: str, name: str = "symx") -> DependencyError:
    with pytest.raises(exc_type) as info:
        importlib.import_module(name)
    assert info.value.code == code
    assert name not in __import__("sys").modules
    return info.value


# --- the declared and pinned case -----------------------------------------------------


def test_declared_and_pinned_dependency_imports_and_the_load_names_the_declaration(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary)
    add(pubs["sym"], paths)
    mp_repo = add(pubs["mp"], paths)
    symx = importlib.import_module("symx")
    assert symx.DEP == "1.3.0" and canary.exists()
    (edge,) = records(paths, "dependency")
    assert edge["outcome"] == "ok" and edge["module"] == "mpx"
    assert f"declared by {pubs['sym'].url}" in edge["via"]
    assert "mpx >=1.1,<1.4" in edge["via"] and "in use: mpx 1.3.0" in edge["via"]
    loads = {r["module"]: r for r in records(paths, "load")}
    assert loads["mpx"]["repo"] == mp_repo.url
    assert "declared by" in loads["mpx"]["via"]
    assert "via" not in loads["symx"]  # imported by local code: the consumer's own pin


def test_declaration_with_another_publishers_key_is_refused_naming_both(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    """M3: symx's publisher says mpx is signed by the third publisher's key;
    the consumer pinned mp's publisher.  Neither side wins silently."""
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary, key=pubs["evil"].pub_path)
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    exc = refused(PublisherMismatchError, "dependency-publisher")
    declared = load_public_key_file(pubs["evil"].pub_path).key_id[:16]
    pinned = load_public_key_file(pubs["mp"].pub_path).key_id[:16]
    assert declared in str(exc) and pinned in str(exc)
    assert not canary.exists()
    (refusal,) = records(paths, "refuse")
    assert refusal["code"] == "dependency-publisher" and refusal["module"] == "mpx"


def test_range_violation_is_refused_naming_the_range(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"], "1.4.0")
    publish_sym(pubs["sym"], pubs["mp"], canary)
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    exc = refused(VersionRangeError, "dependency-range")
    assert ">=1.1,<1.4" in str(exc) and "1.4.0" in str(exc)
    assert not canary.exists()
    assert [r["code"] for r in records(paths, "refuse")] == ["dependency-range"]


def test_security_update_inside_the_range_arrives_and_outside_is_refused(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"], "1.3.0")
    publish_sym(pubs["sym"], pubs["mp"], canary)
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    assert importlib.import_module("symx").DEP == "1.3.0"
    publish_mp(pubs["mp"], "1.3.1")  # a fix inside the range: the normal freshness check
    new_process()
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    assert importlib.import_module("symx").DEP == "1.3.1"
    publish_mp(pubs["mp"], "2.0.0")  # outside: refused, naming the range
    new_process()
    canary.unlink()
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    exc = refused(VersionRangeError, "dependency-range")
    assert "mpx >=1.1,<1.4" in str(exc) and "2.0.0" in str(exc)
    assert not canary.exists()


def test_manifest_version_and_exact_digest_constraints(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"])  # manifest version 1
    publish_sym(pubs["sym"], pubs["mp"], canary, constraint='manifest_versions = ">=2"')
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    exc = refused(VersionRangeError, "dependency-range")
    assert "manifest version >=2" in str(exc)
    new_process()
    import hashlib

    digest = hashlib.sha256(pubs["mp"].manifest_bytes()).hexdigest()
    publish_sym(pubs["sym"], pubs["mp"], canary, constraint=f'manifest_sha256 = "{digest}"')
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    assert importlib.import_module("symx").DEP == "1.3.0"


# --- names map to one repository --------------------------------------------------------


def test_a_third_repository_claiming_the_dependencys_name_is_refused(
    pubs: dict[str, Publisher], paths: Paths, canary: Path, tmp_path: Path
) -> None:
    """Dependency confusion (N1): the third publisher also serves mpx.  With
    both pinned, the name has two owners; with only the third pinned, it is
    not the repository the declaration names.  Both are refusals, never a race."""
    publish_mp(pubs["mp"])
    publish_mp(pubs["evil"], "1.3.0")
    evil_canary = tmp_path / "evil-ran"
    pubs["evil"].write("mpx/__init__.py", canary_code(evil_canary) + "VERSION = '1.3.0'\n")
    pubs["evil"].publish()
    publish_sym(pubs["sym"], pubs["mp"], canary)

    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    add(pubs["evil"], paths)
    exc = refused(DependencyConflictError, "dependency-conflict")
    assert pubs["mp"].url in str(exc) and pubs["evil"].url in str(exc)
    with pytest.raises(DependencyConflictError):
        importlib.import_module("mpx")  # local code gets no first-come winner either

    new_process()
    add(pubs["sym"], paths, trust_dependencies=True)
    add(pubs["evil"], paths, modules=["mpx"])
    exc = refused(DependencyConflictError, "dependency-conflict")
    assert f"declares mpx from {pubs['mp'].url}" in str(exc)
    assert f"gets mpx from {pubs['evil'].url}" in str(exc)
    assert not canary.exists() and not evil_canary.exists()
    assert len(get_finder().repositories) == 2  # the declared repository was not added


def test_undeclared_cross_repository_import_is_refused_unless_unsafe(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary, declare=False)
    add(pubs["sym"], paths)
    add(pubs["mp"], paths)
    with pytest.raises(UndeclaredImportError) as info:
        importlib.import_module("symx")
    assert "declares no dependency on mpx" in str(info.value)
    assert canary.exists()  # symx's code ran up to its import statement
    assert "mpx" not in __import__("sys").modules
    assert [r["code"] for r in records(paths, "refuse")] == ["undeclared-import"]
    new_process()
    canary.unlink()
    with pytest.warns(UserWarning, match="unsafe_undeclared_imports"):
        add(pubs["sym"], paths, unsafe_undeclared_imports=True)
    add(pubs["mp"], paths)
    assert importlib.import_module("symx").DEP == "1.3.0"


def test_a_declared_dependency_the_consumer_did_not_pin_is_not_trusted(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    """A declaration adds no trust on its own: mp is not pinned and symx's
    repository does not follow declarations."""
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary)
    add(pubs["sym"], paths)
    exc = refused(DependencyError, "dependency-refused")
    assert "pins no repository for mpx" in str(exc) and "trust_dependencies" in str(exc)
    assert not any(
        r["url"] == pubs["mp"].url + "secure-import-manifest.json"
        for r in records(paths, "manifest")
    )
    assert pubs["mp"].request_paths() == []  # nothing was even asked of the dependency


# --- following declarations ---------------------------------------------------------------


def test_trust_dependencies_follows_the_declaration_for_the_declared_name_only(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary)
    sym_repo = add(pubs["sym"], paths, trust_dependencies=True)
    assert importlib.import_module("symx").DEP == "1.3.0"
    followed = [r for r in get_finder().repositories if r is not sym_repo]
    assert [r.url for r in followed] == [pubs["mp"].url]
    assert followed[0].modules == {"mpx"}
    (edge,) = records(paths, "dependency")
    assert edge["outcome"] == "followed"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mpextra")  # mp provides it, but it was not declared
    loads = {r["module"]: r for r in records(paths, "load")}
    assert "mpextra" not in loads and "declared by" in loads["mpx"]["via"]
    secure_import.remove_repo(sym_repo)
    assert get_finder().repositories == ()  # the followed repository goes with it


def test_a_followed_dependency_is_verified_against_the_declared_keys(
    pubs: dict[str, Publisher], paths: Paths, canary: Path
) -> None:
    """The declared keys are the only keys the followed repository is pinned
    to: a manifest signed by anyone else (here, the third publisher serving
    at the declared URL) is a signature failure, not a dependency."""
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary, key=pubs["evil"].pub_path)
    add(pubs["sym"], paths, trust_dependencies=True)
    with pytest.raises(secure_import.errors.SignatureError):
        importlib.import_module("symx")
    assert not canary.exists()


def test_one_level_versus_transitive(
    pubs: dict[str, Publisher], paths: Paths, canary: Path, tmp_path: Path
) -> None:
    """symx -> mpx -> basex: trust_dependencies = true follows one level."""
    base = pubs["evil"]  # here simply a third, honest publisher
    base.write("basex/__init__.py", "B = 1\n")
    base.write("basex-1.0.dist-info/METADATA", "Name: basex\nVersion: 1.0\n")
    base.publish()
    pubs["mp"].write("mpx/__init__.py", "import basex\nVERSION = '1.3.0'\n")
    pubs["mp"].write("mpx-1.3.0.dist-info/METADATA", "Name: mpx\nVersion: 1.3.0\n")
    deps = tmp_path / "mp-deps.toml"
    deps.write_text(
        f'[requires.basex]\nrepository = "{base.url}"\nkeys = ["{base.pub_path}"]\n'
        'versions = "==1.*"\n'
    )
    pubs["mp"].publish(requires=deps)
    publish_sym(pubs["sym"], pubs["mp"], canary)

    add(pubs["sym"], paths, trust_dependencies=True)
    with pytest.raises(DependencyError, match="pins no repository for basex"):
        importlib.import_module("symx")
    new_process()
    add(pubs["sym"], paths, trust_dependencies="transitive")
    assert importlib.import_module("symx").DEP == "1.3.0"
    assert {r.url for r in get_finder().repositories} == {p.url for p in pubs.values()}


def test_a_cycle_between_repositories_terminates(
    pubs: dict[str, Publisher], paths: Paths, tmp_path: Path
) -> None:
    a, b = pubs["sym"], pubs["mp"]
    a.write("ax/__init__.py", "X = 1\ndef other():\n    import bx\n    return bx.Y\n")
    b.write("bx/__init__.py", "Y = 2\ndef other():\n    import ax\n    return ax.X\n")
    for other, name in ((b, "bx"), (a, "ax")):
        deps = tmp_path / f"{name}.toml"
        deps.write_text(
            f'[requires.{name}]\nrepository = "{other.url}"\nkeys = ["{other.pub_path}"]\n'
            'manifest_versions = ">=1"\n'
        )
    a.publish(requires=tmp_path / "bx.toml")
    b.publish(requires=tmp_path / "ax.toml")
    repo_a = add(a, paths, trust_dependencies="transitive")
    found, graph = walk([repo_a])  # what lock and tree do
    assert [r.url for r in found] == [a.url, b.url]
    # b's declaration of ax closes the cycle on the repository already there.
    assert [e.target for e in graph.edges(found[1])] == [found[0]]
    found[1].close()
    ax = importlib.import_module("ax")
    assert ax.other() == 2 and importlib.import_module("bx").other() == 1
    assert len(get_finder().repositories) == 2


# --- one lock for the graph ------------------------------------------------------------------


def test_the_lock_pins_both_and_frozen_mode_refuses_a_new_version_of_either(
    pubs: dict[str, Publisher], paths: Paths, canary: Path, tmp_path: Path
) -> None:
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary)
    lock = tmp_path / "graph.lock"
    sym_repo = add(pubs["sym"], paths, trust_dependencies=True)
    found, _ = walk([sym_repo])
    write_lock(lock, [r.lock_entry() for r in found])
    assert set(read_lock(lock)) == {pubs["sym"].url, pubs["mp"].url}
    for r in found[1:]:
        r.close()

    new_process()
    add(pubs["sym"], paths, trust_dependencies=True, lock=lock)
    assert importlib.import_module("symx").DEP == "1.3.0"

    publish_mp(pubs["mp"], "1.3.1")  # inside the range, validly signed: still not locked
    new_process()
    add(pubs["sym"], paths, trust_dependencies=True, lock=lock)
    # The locked manifests are cached: not even asked for, the new one never used.
    assert importlib.import_module("symx").DEP == "1.3.0"
    new_process()
    Cache(paths.cache_dir).clear()  # a fresh deployment host sees only the new version
    add(pubs["sym"], paths, trust_dependencies=True, lock=lock)
    with pytest.raises(LockMismatchError) as info:
        importlib.import_module("symx")
    assert info.value.url == pubs["mp"].url + MANIFEST_NAME

    pubs["mp"].serve_snapshot(1)
    pubs["sym"].write("symx/extra.py", "Z = 1\n")
    pubs["sym"].publish(requires=pubs["sym"].tmp / f"{pubs['sym'].src.name}-deps.toml")
    new_process()
    Cache(paths.cache_dir).clear()
    add(pubs["sym"], paths, trust_dependencies=True, lock=lock)
    with pytest.raises(LockMismatchError) as info:
        importlib.import_module("symx")
    assert info.value.url == pubs["sym"].url + MANIFEST_NAME


def test_frozen_mode_refuses_to_follow_a_dependency_the_lock_does_not_pin(
    pubs: dict[str, Publisher], paths: Paths, canary: Path, tmp_path: Path
) -> None:
    publish_mp(pubs["mp"])
    publish_sym(pubs["sym"], pubs["mp"], canary)
    lock = tmp_path / "sym-only.lock"
    sym_repo = add(pubs["sym"], paths)
    write_lock(lock, [sym_repo.lock_entry()])  # the declaring repository only
    new_process()
    add(pubs["sym"], paths, trust_dependencies=True, lock=lock)
    with pytest.raises(ConfigError, match="not in the lock file"):
        importlib.import_module("symx")
    assert not canary.exists()
    assert len(get_finder().repositories) == 1
