"""importlib.metadata for a distribution whose .dist-info is in the signed tree."""

from __future__ import annotations

import importlib.metadata as md

import pytest

import secure_import
from secure_import.errors import HashMismatchError
from secure_import.hook.metadata import RemoteDistribution

from .conftest import Consumer, Publisher

METADATA = """Metadata-Version: 2.1
Name: Remote-Tool
Version: 2.5.1
Summary: A remote tool.
Requires-Dist: nothing-at-all>=1
"""
ENTRY_POINTS = """[console_scripts]
remote-tool = remote_tool.cli:main

[remote_tool.plugins]
fast = remote_tool.cli:fast
"""
DIST = "remote_tool-2.5.1.dist-info"


def publish_dist(publisher: Publisher, *, record: bool = False) -> None:
    publisher.write(
        "remote_tool/__init__.py",
        "import importlib.metadata\n__version__ = importlib.metadata.version('remote-tool')\n",
    )
    publisher.write(
        "remote_tool/cli.py", "def main():\n    return 'main'\n\ndef fast():\n    pass\n"
    )
    publisher.write(f"{DIST}/METADATA", METADATA)
    publisher.write(f"{DIST}/entry_points.txt", ENTRY_POINTS)
    publisher.write(f"{DIST}/top_level.txt", "remote_tool\n")
    if record:
        publisher.write(f"{DIST}/RECORD", "remote_tool/__init__.py,,\n")
    publisher.publish()


@pytest.fixture
def dist_repo(publisher: Publisher, consumer: Consumer) -> secure_import.Repository:
    publish_dist(publisher)
    return consumer.add()


def test_version_and_metadata_of_a_remote_distribution(
    dist_repo: secure_import.Repository,
) -> None:
    assert md.version("remote-tool") == "2.5.1"
    assert md.version("Remote_Tool") == "2.5.1"
    meta = md.metadata("remote-tool")
    assert meta["Summary"] == "A remote tool."
    assert md.requires("remote-tool") == ["nothing-at-all>=1"]
    dist = md.distribution("remote-tool")
    assert isinstance(dist, RemoteDistribution)


def test_module_reading_its_own_version_at_import(dist_repo: secure_import.Repository) -> None:
    import remote_tool  # type: ignore[import-not-found]

    assert remote_tool.__version__ == "2.5.1"


def test_entry_points_of_a_remote_distribution(dist_repo: secure_import.Repository) -> None:
    (ep,) = md.entry_points(group="remote_tool.plugins")
    assert ep.name == "fast" and ep.value == "remote_tool.cli:fast"
    assert ep.load().__module__ == "remote_tool.cli"
    scripts = md.entry_points(group="console_scripts", name="remote-tool")
    assert [e.load()() for e in scripts] == ["main"]


def test_files_are_synthesised_from_the_signed_manifest_and_read_verified(
    dist_repo: secure_import.Repository,
) -> None:
    files = md.files("remote-tool")
    assert files is not None
    by_name = {str(f): f for f in files}
    assert set(by_name) == {
        "remote_tool/__init__.py",
        "remote_tool/cli.py",
        f"{DIST}/METADATA",
        f"{DIST}/entry_points.txt",
        f"{DIST}/top_level.txt",
    }
    cli = by_name["remote_tool/cli.py"]
    signed = dist_repo.manifest.files["remote_tool/cli.py"]
    assert cli.size == signed.length and cli.hash is not None
    assert cli.read_text().startswith("def main()")
    assert md.packages_distributions()["remote_tool"] == ["Remote-Tool"]


def test_a_published_record_is_used_as_is(publisher: Publisher, consumer: Consumer) -> None:
    publish_dist(publisher, record=True)
    consumer.add()
    assert [str(f) for f in md.files("remote-tool") or []] == ["remote_tool/__init__.py"]


def test_unknown_distribution_is_not_found(dist_repo: secure_import.Repository) -> None:
    with pytest.raises(md.PackageNotFoundError):
        md.version("no-such-remote-dist")


def test_tampered_metadata_is_refused(
    dist_repo: secure_import.Repository, publisher: Publisher, consumer: Consumer
) -> None:
    publisher.tamper(f"{DIST}/METADATA", METADATA.replace("2.5.1", "9.9.9").encode())
    with pytest.raises(HashMismatchError):
        md.version("remote-tool")
    assert consumer.refusals()[-1]["code"] == "hash-mismatch"


def test_removed_repository_no_longer_provides_metadata(
    dist_repo: secure_import.Repository,
) -> None:
    assert md.version("remote-tool") == "2.5.1"
    secure_import.remove_repo(dist_repo)
    with pytest.raises(md.PackageNotFoundError):
        md.version("remote-tool")
