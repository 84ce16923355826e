"""THREATS.md L1-L8: an attacker who can write to some local files."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
from pathlib import Path

import pytest

from secure_import.assembly import Assembler, Unit
from secure_import.config import MANIFEST_NAME
from secure_import.errors import AuditWriteError, RollbackError, UnsafePermissionsError
from secure_import.publish.serve import Response
from secure_import.store.audit import AuditLog, verify_chain
from secure_import.store.cache import Cache

from .conftest import Scenario, import_victim


def object_path(scenario: Scenario, rel: str) -> Path:
    manifest_entry = scenario.publisher.signed_files()[rel]
    sha = manifest_entry.sha256
    return scenario.consumer.paths.cache_dir / "objects" / sha[:2] / sha


def test_l1_cached_file_edited_after_verification_is_discarded_and_refetched(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    cached = object_path(scenario, "victim/part.py")
    cached.write_bytes(scenario.evil())  # edited on disk after verification
    scenario.consumer.new_process()
    part = importlib.import_module("victim.part")
    assert part.X == 1  # ran from authenticated bytecode of the verified source
    assert not scenario.canary.exists()
    # The edited source is detected the moment it is read (here by inspect).
    assert inspect.getsource(part) == "X = 1\n"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == cached.name  # refetched
    corrupt = [r for r in scenario.consumer.audit() if r["event"] == "cache-corrupt"]
    assert len(corrupt) == 1
    assert corrupt[0]["sha256"] == cached.name


def test_l1_edited_source_without_bytecode_is_caught_before_import(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    for bytecode in (scenario.consumer.paths.cache_dir / "bytecode").rglob("*"):
        if bytecode.is_file():
            bytecode.unlink()
    cached = object_path(scenario, "victim/part.py")
    cached.write_bytes(scenario.evil())
    scenario.consumer.new_process()
    assert import_victim().part.X == 1  # type: ignore[attr-defined]
    assert not scenario.canary.exists()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == cached.name
    assert [r["event"] for r in scenario.consumer.audit()].count("cache-corrupt") == 1


def test_l2_clearing_the_cache_does_not_reset_the_high_water_mark(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    scenario.warm()
    Cache(scenario.consumer.paths.cache_dir).clear()
    scenario.publisher.serve_snapshot(1)
    scenario.consumer.new_process()
    scenario.refused(import_victim, RollbackError, "rollback")


def test_l2_older_manifest_planted_in_the_cache_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    v1 = scenario.publisher.manifest_bytes()
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    repo = scenario.warm()
    cache = Cache(scenario.consumer.paths.cache_dir)
    cache.put_metadata(repo.id, MANIFEST_NAME, v1)  # planted, and the server is "down"
    scenario.publisher.respond(MANIFEST_NAME, Response(status=503))
    scenario.consumer.new_process()
    scenario.refused(import_victim, RollbackError, "rollback")


@pytest.mark.parametrize("which", ["cache_dir", "state_dir"])
def test_l3_directory_writable_by_others_is_refused_before_any_read(
    scenario: Scenario, which: str
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    directory: Path = getattr(scenario.consumer.paths, which)
    os.chmod(directory, 0o777)
    scenario.consumer.new_process()
    scenario.publisher.server.clear_requests()
    scenario.refused(import_victim, UnsafePermissionsError, "unsafe-permissions")
    os.chmod(directory, 0o700)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs chown")
def test_l3_directory_owned_by_another_user_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    os.chown(scenario.consumer.paths.cache_dir, 65534, 65534)
    scenario.consumer.new_process()
    scenario.refused(import_victim, UnsafePermissionsError, "unsafe-permissions")


def test_l3_symlinked_cache_directory_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    scenario.publish_baseline()
    elsewhere = tmp_path / "attacker-controlled"
    elsewhere.mkdir(mode=0o700)
    scenario.consumer.paths.cache_dir.symlink_to(elsewhere)
    scenario.consumer.add()
    scenario.refused(import_victim, UnsafePermissionsError, "unsafe-permissions")


def test_l4_symlink_planted_at_a_cache_path_is_never_followed(
    scenario: Scenario, tmp_path: Path
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    target = tmp_path / "precious.txt"
    target.write_text("do not overwrite")
    planted = object_path(scenario, "victim/part.py")
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(target)
    assert import_victim().part.X == 1  # type: ignore[attr-defined]
    assert target.read_text() == "do not overwrite"
    assert not planted.is_symlink()  # replaced by the verified file, not written through
    assert hashlib.sha256(planted.read_bytes()).hexdigest() == planted.name


def test_l5_file_swapped_after_verification_is_not_what_runs(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    original = Assembler.verify_unit

    def verify_then_swap(self: Assembler, unit: Unit) -> None:
        original(self, unit)
        for rel in ("victim/__init__.py", "victim/part.py"):
            path = object_path(scenario, rel)
            if path.exists():
                path.write_bytes(scenario.evil())  # swapped right after verification

    monkeypatch.setattr(Assembler, "verify_unit", verify_then_swap)
    assert import_victim().part.X == 1  # type: ignore[attr-defined]
    assert not scenario.canary.exists()


def _write_records(scenario: Scenario) -> Path:
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    log = scenario.consumer.paths.audit_log
    assert verify_chain(log).ok
    assert verify_chain(log).records >= 4
    return log


def test_l6_edited_audit_line_is_reported(scenario: Scenario) -> None:
    log = _write_records(scenario)
    lines = log.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[2])
    record["module"] = "innocent"
    lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    report = verify_chain(log)
    assert not report.ok and report.broken_at == 4  # the line after the edit


def test_l6_deleted_audit_line_is_reported(scenario: Scenario) -> None:
    log = _write_records(scenario)
    lines = log.read_bytes().splitlines(keepends=True)
    del lines[1]
    log.write_bytes(b"".join(lines))
    report = verify_chain(log)
    assert not report.ok and report.broken_at == 2


def test_l6_truncated_audit_log_is_reported(scenario: Scenario) -> None:
    log = _write_records(scenario)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-2]))  # whole lines removed at the end
    report = verify_chain(log)
    assert not report.ok and report.broken_at == len(lines) - 1
    assert "removed at the end" in (report.reason or "")
    log.write_bytes(b"".join(lines)[:-10])  # cut mid-line
    assert not verify_chain(log).ok


def test_l7_audit_log_not_writable_fails_the_import_closed(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    log = scenario.consumer.paths.audit_log
    log.unlink()
    log.mkdir()  # cannot be opened for appending, even by root
    with pytest.raises(AuditWriteError) as info:
        import_victim()
    assert info.value.code == "audit-write-failed"
    assert "victim" not in sys.modules
    assert not scenario.canary.exists()


def test_l7_unaudited_code_never_runs(scenario: Scenario, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    scenario.publisher.write("good.py", "VALUE = 1\n")
    scenario.publisher.write(
        "victim/__init__.py", f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
    )
    scenario.publisher.publish()
    scenario.warm()
    log = scenario.consumer.paths.audit_log
    log.unlink()
    log.mkdir()
    with pytest.raises(AuditWriteError):
        importlib.import_module("victim")
    assert not marker.exists()


def test_l8_bytecode_is_never_read_from_a_pycache_next_to_a_url(scenario: Scenario) -> None:
    """The remote module's __cached__ path is not a place we read code from:
    code always comes from verified source (or secure_import's own
    authenticated bytecode store, tested in tests/test_bytecode.py)."""
    scenario.publish_baseline()
    scenario.warm()
    module = import_victim()
    cached = getattr(module, "__cached__", None)
    assert cached is None or not os.path.exists(cached)
    records = list(AuditLog(scenario.consumer.paths.audit_log).records())
    assert any(r["event"] == "load" and r["module"] == "victim" for r in records)
