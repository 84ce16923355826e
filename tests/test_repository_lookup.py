"""``Repository.lookup``: the one question the finder asks about a name, and
lock pins taken from a repository (``lock_entry``) rather than the lock module
reaching into it.  Over the in-memory site of :mod:`tests.memsite`."""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

import pytest

from secure_import.errors import ConfigError
from secure_import.repository import Repository
from secure_import.store.lock import LockEntry, read_lock, write_lock

from .memsite import BASE, Site


@pytest.fixture
def site(tmp_path: Path, canary: Path) -> Site:
    return Site(tmp_path, canary)


def test_lookup_answers_module_package_data_dir_and_unlisted(site: Site) -> None:
    repo = site.repository()
    module = repo.lookup("pkg.a")
    assert module is not None and module.entry is not None
    assert (module.entry.path, module.is_package, module.data_dir) == ("pkg/a.py", False, None)
    package = repo.lookup("pkg")
    assert package is not None and package.entry is not None
    assert (package.entry.path, package.is_package) == ("pkg/__init__.py", True)
    data = repo.lookup("pkg.data")
    assert data is not None
    assert (data.entry, data.is_package, data.data_dir) == (None, True, "pkg/data")
    assert repo.lookup("pkg.missing") is None
    assert repo.lookup("nothing") is None
    served = [rel for rel, _ in site.transports[-1].served]
    assert served == ["secure-import-manifest.json"]  # one manifest request, nothing else


def test_f3_the_finder_asks_the_repository_once_per_name(
    site: Site, monkeypatch: pytest.MonkeyPatch, canary: Path
) -> None:
    """The finder no longer reads the manifest itself and then asks ``find``
    again: one ``lookup`` per name; ``find`` is left for refusals only."""
    asked: list[str] = []
    real = Repository.lookup

    def spy(self: Repository, name: str) -> object:
        asked.append(name)
        return real(self, name)

    def no_find(self: Repository, fullname: str) -> object:
        raise AssertionError(f"find({fullname!r}) asked for a listed name")

    monkeypatch.setattr(Repository, "lookup", spy)
    monkeypatch.setattr(Repository, "find", no_find)
    site.repository()
    pkg = importlib.import_module("pkg")
    assert pkg.a.NAME == "a"
    assert importlib.resources.files("pkg.data").joinpath("table.txt").read_text() == "a,b\n"
    assert sorted(asked) == ["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.data"]
    assert not canary.exists()  # armed was never imported


def test_lock_entry_pins_the_verified_manifest_and_write_lock_needs_no_repository(
    site: Site, tmp_path: Path
) -> None:
    repo = site.repository()
    pin = repo.lock_entry()
    assert pin.url == BASE and pin.manifest_version == 1
    assert pin.manifest_sha256 == repo.trusted_manifest().envelope_digest
    lock = tmp_path / "pins.lock"
    assert write_lock(lock, [pin]) == {BASE: pin}
    assert read_lock(lock) == {BASE: pin}


def test_write_lock_refuses_two_different_pins_for_one_url_and_writes_nothing(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "pins.lock"
    one = LockEntry(BASE, "a" * 64, 1)
    other = LockEntry(BASE, "b" * 64, 2)
    with pytest.raises(ConfigError):
        write_lock(lock, [one, other])
    assert not lock.exists()
    assert write_lock(lock, [one, one]) == {BASE: one}  # the same pin twice is one pin


def test_write_lock_refuses_a_repository_given_as_before(site: Site, tmp_path: Path) -> None:
    lock = tmp_path / "pins.lock"
    with pytest.raises(TypeError, match="lock_entry"):
        write_lock(lock, [site.repository()])  # type: ignore[list-item]
    assert not lock.exists()
