"""importlib.resources over a remote package: listed data files, verified like code."""

from __future__ import annotations

import importlib
import importlib.resources as resources
import pkgutil
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import HashMismatchError
from secure_import.hook.resources import RemoteTraversable

from .conftest import Consumer, Publisher

NESTED = 300


def publish_data(publisher: Publisher) -> None:
    publisher.write("datapkg/__init__.py", "")
    publisher.write("datapkg/hello.txt", "héllo\n")
    publisher.write("datapkg/blob.bin", bytes(range(256)))
    publisher.write("datapkg/sub/__init__.py", "")
    publisher.write("datapkg/sub/inner.txt", "inner\n")
    for i in range(NESTED):
        publisher.write(f"datapkg/tables/part{i // 100}/t{i:03d}.txt", f"table {i}\n")
    publisher.publish()


@pytest.fixture
def data_repo(publisher: Publisher, consumer: Consumer) -> secure_import.Repository:
    publish_data(publisher)
    return consumer.add()


def test_files_reads_text_and_bytes_of_listed_files(data_repo: secure_import.Repository) -> None:
    root = resources.files("datapkg")
    assert isinstance(root, RemoteTraversable)
    assert (root / "hello.txt").read_text(encoding="utf-8") == "héllo\n"
    assert root.joinpath("blob.bin").read_bytes() == bytes(range(256))
    assert (root / "hello.txt").is_file() and not (root / "hello.txt").is_dir()
    assert (root / "tables").is_dir()
    assert not (root / "absent.txt").is_file()
    with pytest.raises(FileNotFoundError):
        (root / "absent.txt").read_bytes()
    with (root / "hello.txt").open("rb") as stream:
        assert stream.read() == "héllo\n".encode()
    assert str(root / "hello.txt") == data_repo.url + "datapkg/hello.txt"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_legacy_functions_and_subpackages(data_repo: secure_import.Repository) -> None:
    assert resources.read_text("datapkg", "hello.txt", encoding="utf-8") == "héllo\n"
    assert resources.read_binary("datapkg", "blob.bin")[:3] == b"\x00\x01\x02"
    with resources.open_text("datapkg", "hello.txt", encoding="utf-8") as stream:
        assert stream.read() == "héllo\n"
    assert resources.is_resource("datapkg", "hello.txt")
    assert not resources.is_resource("datapkg", "tables")
    assert set(resources.contents("datapkg")) >= {"__init__.py", "hello.txt", "sub", "tables"}
    assert resources.files("datapkg.sub").joinpath("inner.txt").read_text() == "inner\n"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_as_file_materialises_verified_bytes_in_a_temporary_file(
    data_repo: secure_import.Repository,
) -> None:
    with resources.as_file(resources.files("datapkg") / "blob.bin") as path:
        assert isinstance(path, Path)
        assert path.read_bytes() == bytes(range(256))
        kept = path
    assert not kept.exists()
    with resources.path("datapkg", "hello.txt") as path:
        assert path.read_text(encoding="utf-8") == "héllo\n"


def test_nested_data_only_directories_with_hundreds_of_files(
    data_repo: secure_import.Repository,
) -> None:
    tables = resources.files("datapkg") / "tables"
    parts = sorted(p.name for p in tables.iterdir())
    assert parts == ["part0", "part1", "part2"]
    seen = {f.name: f.read_text() for part in tables.iterdir() for f in part.iterdir()}
    assert len(seen) == NESTED
    assert seen["t123.txt"] == "table 123\n"
    assert (tables / "part2/t299.txt").read_text() == "table 299\n"


def test_pkgutil_get_data_uses_verified_bytes(data_repo: secure_import.Repository) -> None:
    assert pkgutil.get_data("datapkg", "hello.txt") == "héllo\n".encode()
    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("datapkg", "nope.txt")


def test_tampered_data_file_is_refused_and_audited(
    data_repo: secure_import.Repository, publisher: Publisher, consumer: Consumer
) -> None:
    importlib.import_module("datapkg")
    publisher.tamper("datapkg/hello.txt", b"evil!!\n")
    with pytest.raises(HashMismatchError):
        (resources.files("datapkg") / "hello.txt").read_bytes()
    assert consumer.refusals()[-1]["code"] == "hash-mismatch"
    consumer.assert_cache_verified(absent=b"evil!!\n")


def test_unlisted_data_file_is_not_requested(
    data_repo: secure_import.Repository, publisher: Publisher
) -> None:
    root = resources.files("datapkg")
    (publisher.out / "datapkg" / "secret.txt").write_text("not signed")
    publisher.server.clear_requests()
    assert not (root / "secret.txt").is_file()
    with pytest.raises(FileNotFoundError):
        (root / "secret.txt").read_text()
    assert publisher.request_paths() == []


def test_traversal_outside_the_tree_is_refused(data_repo: secure_import.Repository) -> None:
    root = resources.files("datapkg")
    with pytest.raises(ValueError):
        root / "../other"
    with pytest.raises(ValueError):
        root / "/etc/passwd"
    with pytest.raises(ValueError):
        (root / "hello.txt").open("w")


def test_second_read_comes_from_cache(
    data_repo: secure_import.Repository, publisher: Publisher
) -> None:
    root = resources.files("datapkg")
    assert (root / "hello.txt").read_bytes()
    publisher.server.clear_requests()
    assert (root / "hello.txt").read_bytes() == "héllo\n".encode()
    assert publisher.request_paths() == []


def test_data_only_directory_imports_as_an_empty_package_for_files(
    data_repo: secure_import.Repository, consumer: Consumer
) -> None:
    tables = importlib.import_module("datapkg.tables")
    assert tables.__spec__.origin is None and not hasattr(tables, "__file__")
    assert tables.__path__ == [data_repo.url + "datapkg/tables/"]
    assert set(vars(tables)) == {
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__path__",
    }  # nothing ran
    assert resources.files("datapkg.tables.part1").joinpath("t150.txt").read_text() == (
        "table 150\n"
    )
    assert not [r for r in consumer.audit() if r.get("module") == "datapkg.tables"]


def test_traversables_sort_and_expose_suffix_and_stem_like_paths(
    data_repo: secure_import.Repository,
) -> None:
    root = resources.files("datapkg")
    names = [p.name for p in sorted(root.iterdir(), reverse=True)]
    assert names == sorted(names, reverse=True)
    hello = root / "hello.txt"
    assert (hello.suffix, hello.stem, hello.suffixes) == (".txt", "hello", [".txt"])
    assert (root / "tables").suffix == ""


def test_fspath_gives_a_private_copy_of_verified_bytes(
    data_repo: secure_import.Repository,
) -> None:
    import os
    import stat

    hello = resources.files("datapkg") / "hello.txt"
    local = Path(hello)
    assert local.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert os.fspath(hello) == str(local) and str(hello).startswith("https://")
    Path(resources.files("datapkg") / "sub" / "inner.txt")  # a file, then its directory
    sub = Path(resources.files("datapkg") / "sub")
    assert (sub / "inner.txt").read_text() == "inner\n"
    with pytest.raises(FileNotFoundError):
        os.fspath(resources.files("datapkg") / "absent.txt")
