"""Lock files and frozen mode; prefetching the cache at deploy time."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_import.errors import ConfigError, FormatError, HashMismatchError, LockMismatchError
from secure_import.store.cache import Cache
from secure_import.store.lock import read_lock, write_lock

from .conftest import Scenario, import_victim


def locked(scenario: Scenario, tmp_path: Path) -> Path:
    scenario.publish_baseline()
    repo = scenario.consumer.add()
    lock = tmp_path / "secure-import.lock"
    entries = write_lock(lock, [repo.lock_entry()])
    assert entries[repo.url].manifest_version == 1
    return lock


def test_frozen_mode_imports_the_locked_manifest(scenario: Scenario, tmp_path: Path) -> None:
    lock = locked(scenario, tmp_path)
    scenario.consumer.new_process(lock=lock)
    assert import_victim().OK is True  # type: ignore[attr-defined]


def test_new_version_signed_by_a_stolen_key_is_refused_until_the_lock_changes(
    scenario: Scenario, tmp_path: Path
) -> None:
    lock = locked(scenario, tmp_path)
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()  # validly signed: as a thief of the key could
    Cache(scenario.consumer.paths.cache_dir).clear()  # a fresh deployment host
    scenario.consumer.new_process(lock=lock)
    exc = scenario.refused(import_victim, LockMismatchError, "lock-mismatch")
    assert "version 2" in str(exc)
    # Updating the lock on purpose accepts it.
    repo = scenario.consumer.new_process()
    write_lock(lock, [repo.lock_entry()])
    scenario.consumer.new_process(lock=lock)
    assert import_victim().part.X == 2  # type: ignore[attr-defined]


def test_frozen_host_with_the_locked_manifest_never_takes_new_files(
    scenario: Scenario, tmp_path: Path
) -> None:
    lock = locked(scenario, tmp_path)
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    scenario.consumer.new_process(lock=lock)
    scenario.publisher.server.clear_requests()
    # The locked manifest is cached, so it is not even asked for; the new
    # version's bytes do not match the locked hashes.
    scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    assert "/secure-import-manifest.json" not in scenario.publisher.request_paths()


def test_prefetched_frozen_deployment_imports_with_no_network(
    scenario: Scenario, tmp_path: Path
) -> None:
    lock = locked(scenario, tmp_path)
    repo = scenario.consumer.new_process(lock=lock)
    assert repo.prefetch() == 3  # good.py, victim/__init__.py, victim/part.py
    scenario.publisher.close()  # the server is gone
    later = datetime.now(UTC) + timedelta(days=400)  # and the manifest has long expired
    scenario.consumer.new_process(lock=lock, clock=lambda: later)
    assert import_victim().part.X == 1  # type: ignore[attr-defined]
    assert importlib.import_module("good").VALUE == 1


def test_repository_missing_from_the_lock_is_a_configuration_error(
    scenario: Scenario, tmp_path: Path
) -> None:
    lock = tmp_path / "empty.lock"
    lock.write_text('{"lock_version":1,"repositories":{}}')
    with pytest.raises(ConfigError, match="not in the lock file"):
        scenario.consumer.add(lock=lock)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"lock_version":2,"repositories":{}}',
        '{"lock_version":1,"repositories":{},"extra":1}',
        '{"lock_version":1,"repositories":{"u":{"manifest_sha256":"xyz","manifest_version":1}}}',
        '{"lock_version":1,"repositories":{"u":{"manifest_sha256":"'
        + "a" * 64
        + '","manifest_version":true}}}',
    ],
)
def test_malformed_lock_file_is_refused(tmp_path: Path, text: str) -> None:
    lock = tmp_path / "bad.lock"
    lock.write_text(text)
    with pytest.raises(FormatError):
        read_lock(lock)


def test_lock_file_is_canonical_json(scenario: Scenario, tmp_path: Path) -> None:
    lock = locked(scenario, tmp_path)
    doc = json.loads(lock.read_text())
    assert doc["lock_version"] == 1
    (entry,) = doc["repositories"].values()
    assert len(entry["manifest_sha256"]) == 64
