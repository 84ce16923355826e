"""THREATS.md H4 and H9: names and origins when several repositories share a
host, and distribution metadata a repository may not provide."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
from pathlib import Path

import pytest

import secure_import
from secure_import.publish.sign import publish
from secure_import.store.keyfiles import generate_keypair, load_private_key_file

from ..conftest import Publisher, canary_code


def _overlapping(publisher: Publisher, tmp: Path, canary: Path) -> tuple[str, Path]:
    """Repository A at ``https://h/`` provides ``b`` and signs ``b/pkg/sub.py``
    with code that writes the canary (its bundle carries those bytes);
    repository B at ``https://h/b/`` (another key) provides ``pkg`` with a
    harmless ``pkg/sub.py``.  Returns B's URL and public key."""
    publisher.write("b/__init__.py", "")
    publisher.write("b/pkg/__init__.py", "")
    publisher.write("b/pkg/sub.py", canary_code(canary) + "WHO = 'A'\n")
    publisher.publish()
    key, pub = generate_keypair("b-publisher", tmp / "b-keys")
    src = tmp / "b-src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("WHO = 'B'\n")
    (src / "pkg" / "sub.py").write_text("WHO = 'B'\n")
    site = tmp / "b-site"
    publish(src, site, private_keys=[load_private_key_file(key)])
    # Served from the same origin, under A's tree: B's files replace A's
    # loose b/pkg/*.py, while A's signed bundle still carries A's bytes.
    shutil.copytree(site, publisher.out / "b", dirs_exist_ok=True)
    return publisher.url + "b/", pub


@pytest.mark.parametrize("order", ["prefix-first", "longer-first"])
def test_h4_a_submodule_is_served_only_by_the_repository_of_its_package(
    publisher: Publisher, tmp_path: Path, canary: Path, order: str
) -> None:
    """Before: with ``https://h/`` added first, ``pkg.sub`` of the repository at
    ``https://h/b/`` came from the first repository's signed tree (its
    ``b.pkg.sub``), while ``__file__`` still showed the second URL."""
    b_url, b_pub = _overlapping(publisher, tmp_path, canary)
    ca = publisher.rig.ca_pem_path
    paths = secure_import.Paths(
        cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", log_dir=tmp_path / "log"
    )

    def add_a() -> None:
        secure_import.add_repo(
            publisher.url, keys=[publisher.pub_path], modules=["b"], ca_bundle=ca, paths=paths
        )

    def add_b() -> None:
        secure_import.add_repo(b_url, keys=[b_pub], modules=["pkg"], ca_bundle=ca, paths=paths)

    for add in (add_a, add_b) if order == "prefix-first" else (add_b, add_a):
        add()
    sub = importlib.import_module("pkg.sub")
    assert sub.WHO == "B"
    assert sub.__file__ == b_url + "pkg/sub.py"
    assert not canary.exists(), "repository A's code ran for a module of repository B"
    assert "/secure-import-bundles/" not in "".join(
        p for p in publisher.request_paths() if not p.startswith("/b/")
    ), "repository A's bundle was fetched for B's package"
    # A still serves its own package, under its own name.
    assert importlib.import_module("b").__file__ == publisher.url + "b/__init__.py"
    loads = [
        r
        for r in secure_import.AuditLog(paths.audit_log).records()
        if r["event"] == "load" and r.get("module") == "pkg.sub"
    ]
    assert [r["repo"] for r in loads] == [b_url]


# --- H9: distribution metadata -----------------------------------------------------------


def test_h9_metadata_for_a_name_the_repository_may_not_provide_is_not_served(
    publisher: Publisher, tmp_path: Path
) -> None:
    """A repository allowed only ``good`` publishes ``requests-99.0.dist-info``
    with a ``pytest11`` entry point: neither the version nor the entry point
    appears, while its own distribution's metadata still does."""
    publisher.write("good/__init__.py", "X = 1\n")
    publisher.write(
        "good-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: good\nVersion: 1.0\n"
    )
    publisher.write("good-1.0.dist-info/top_level.txt", "good\n")
    publisher.write(
        "requests-99.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: requests\nVersion: 99.0\n"
    )
    publisher.write("requests-99.0.dist-info/entry_points.txt", "[pytest11]\nevil = good:X\n")
    publisher.write("requests-99.0.dist-info/top_level.txt", "requests\n")
    publisher.write(
        "sneaky-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: sneaky\nVersion: 1.0\n"
    )
    publisher.write("sneaky-1.0.dist-info/entry_points.txt", "[pytest11]\nsneaky = good:X\n")
    publisher.publish()
    secure_import.add_repo(
        publisher.url,
        keys=[publisher.pub_path],
        modules=["good"],
        ca_bundle=publisher.rig.ca_pem_path,
        paths=secure_import.Paths(
            cache_dir=tmp_path / "c", state_dir=tmp_path / "s", log_dir=tmp_path / "l"
        ),
    )
    remote = [
        d for d in importlib.metadata.distributions() if type(d).__name__ == "RemoteDistribution"
    ]
    assert {d.metadata["Name"] for d in remote} == {"good"}
    assert importlib.metadata.version("good") == "1.0"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("sneaky")
    try:
        assert importlib.metadata.version("requests") != "99.0"
    except importlib.metadata.PackageNotFoundError:
        pass
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    assert "evil" not in names and "sneaky" not in names
