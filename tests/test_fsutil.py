"""fsutil.read_file: the one reader of cache, memo, pack and state files."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from secure_import.store import fsutil
from secure_import.store.fsutil import read_file


@pytest.mark.parametrize("size", [0, 1, 4095, 70_000, 300_000])
def test_reads_exactly_the_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    assert read_file(path) == data


def test_absent_symlink_and_directory_read_as_absent(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    (tmp_path / "link").symlink_to(target)
    assert read_file(tmp_path / "missing") is None
    assert read_file(tmp_path / "link") is None  # never read through a planted symlink
    assert read_file(tmp_path) is None
    assert target.read_bytes() == b"secret"


def test_a_file_longer_than_its_fstat_said_is_read_to_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that grew after the fstat: the reader goes on to EOF instead of
    returning the first ``st_size + 1`` bytes."""
    path = tmp_path / "f"
    data = os.urandom(200_000)
    path.write_bytes(data)
    real_fstat = os.fstat

    class Shrunk:
        def __init__(self, info: os.stat_result) -> None:
            self.st_mode = info.st_mode
            self.st_size = 10

    monkeypatch.setattr(fsutil.os, "fstat", lambda fd: Shrunk(real_fstat(fd)))
    assert read_file(path) == data


def test_reading_allocates_no_more_than_the_file(tmp_path: Path) -> None:
    """Reading many small files (a cold import reads one sealed file per
    module) must not allocate a large buffer per read only to find EOF."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 6000)
    read_file(path)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        data = read_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == b"x" * 6000
    assert peak < 6000 + 4096
