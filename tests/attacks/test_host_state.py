"""THREATS.md H3, H7 and the concurrency/fault rows of issue 14: an attacker
(or an accident) on the same machine acting on our cache, state and log
directories, and faults while writing them."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from secure_import.config import MANIFEST_NAME
from secure_import.errors import (
    AuditWriteError,
    EquivocationError,
    LocalStateError,
    RollbackError,
    SecureImportError,
    UnsafePermissionsError,
)
from secure_import.publish.serve import RequestInfo, Response
from secure_import.store import fsutil
from secure_import.store.audit import AuditLog, verify_chain
from secure_import.store.cache import MARKER_NAME, Cache
from secure_import.store.paths import Paths
from secure_import.store.state import StateStore
from secure_import.verify.pointer import POINTER_NAME, make_pointer
from secure_import.verify.trust import HighWater

from .conftest import Scenario, import_victim

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (files with their bytes, directories and links as None)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


# --- H7: parents of our directories -------------------------------------------------------


def test_h7_parents_we_create_are_0700_even_with_a_group_writable_umask(tmp_path: Path) -> None:
    """With umask 002, ``mkdir -p`` would make ~/.local and ~/.local/state
    0775; every level we create is 0700."""
    old = os.umask(0o002)
    try:
        target = tmp_path / "home" / ".local" / "state" / "secure-import"
        fsutil.secure_dir(target, what="state")
    finally:
        os.umask(old)
    for level in (target, target.parent, target.parent.parent, target.parent.parent.parent):
        assert _mode(level) == 0o700, level


def test_h7_cache_subdirectories_are_0700_as_the_readme_says(scenario: Scenario) -> None:
    old = os.umask(0o022)
    try:
        scenario.publish_baseline()
        scenario.warm()
        import_victim()
    finally:
        os.umask(old)
    cache = scenario.consumer.paths.cache_dir
    directories = [cache, *(p for p in cache.rglob("*") if p.is_dir())]
    assert {cache / "objects", cache / "metadata"} <= set(directories)
    for directory in directories:
        assert _mode(directory) == 0o700, directory
    for directory in [scenario.consumer.paths.state_dir, scenario.consumer.paths.log_dir]:
        assert _mode(directory) == 0o700


def test_h7_state_dir_under_a_group_writable_parent_is_refused_before_use(
    scenario: Scenario,
) -> None:
    """Whoever can write the parent can rename the state directory away and
    so reset the high-water marks: refused with a clear error, audited, and
    nothing of the repository runs."""
    scenario.publish_baseline()
    weak = scenario.tmp / "shared"
    weak.mkdir()
    os.chmod(weak, 0o775)
    os.chown(weak, -1, NOBODY)  # a group others are in (not the user's private group)
    paths = scenario.consumer.paths
    scenario.consumer.paths = Paths(
        cache_dir=paths.cache_dir, state_dir=weak / "state", log_dir=paths.log_dir
    )
    scenario.consumer.add(paths=scenario.consumer.paths)
    with pytest.raises(UnsafePermissionsError) as info:
        import_victim()
    assert info.value.check == "directory-parent"
    assert str(weak) in str(info.value) and "chmod go-w" in str(info.value)
    assert not scenario.canary.exists()
    assert not (weak / "state" / "repos").exists()  # no trust state written there
    refusals = scenario.consumer.refusals()
    assert [r["code"] for r in refusals] == ["unsafe-permissions"]


def test_h7_parent_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "theirs"
    other.mkdir(mode=0o755)
    os.chown(other, NOBODY, NOBODY)
    with pytest.raises(UnsafePermissionsError) as info:
        fsutil.secure_dir(other / "state", what="state")
    assert info.value.check == "directory-parent"
    assert f"uid {NOBODY}" in str(info.value)


def test_h7_sticky_world_writable_parent_is_accepted_when_the_entry_is_ours(
    tmp_path: Path,
) -> None:
    """The kernel's own rule: in a sticky directory such as /tmp only the
    owner of an entry may rename it."""
    sticky = tmp_path / "tmp-like"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    assert fsutil.secure_dir(sticky / "mine" / "state", what="state")
    # Not sticky: the same layout is refused.
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(UnsafePermissionsError):
        fsutil.secure_dir(loose / "mine" / "state", what="state")


def test_h7_sticky_parent_does_not_help_an_entry_owned_by_another_user(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp-like"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    theirs = sticky / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafePermissionsError):
        fsutil.secure_dir(theirs / "state", what="state")


def test_h7_a_symlink_owned_by_another_user_on_the_way_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafePermissionsError) as info:
        fsutil.secure_dir(link / "state", what="state")
    assert "symlink owned by another user" in str(info.value)


def test_h7_state_dir_renamed_away_gives_a_restarted_chain_not_an_intact_one(
    scenario: Scenario,
) -> None:
    """The state directory (and the log under it) moved away: the new log's
    first record says a chain restarted, and ``verify_chain`` with the
    witness reports it instead of calling a fresh chain simply intact."""
    scenario.publish_baseline()
    scenario.warm()
    paths = scenario.consumer.paths
    before = verify_chain(paths.audit_log, witness=paths.audit_witness)
    assert before.ok and before.records >= 2 and before.restarts == ()
    paths.log_dir.rename(scenario.tmp / "moved-away")
    scenario.consumer.new_process()
    importlib.import_module("good")
    records = scenario.consumer.audit()
    assert records[0]["event"] == "chain-restart"
    assert records[0]["prev"] == "0" * 64
    after = verify_chain(paths.audit_log, witness=paths.audit_witness)
    assert after.ok
    assert len(after.restarts) == 1 and "not in this file" in after.restarts[0]


def test_h7_log_deleted_with_its_anchor_is_reported_through_the_witness(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    paths = scenario.consumer.paths
    for name in (paths.audit_log, paths.audit_log.with_name("audit.jsonl.head")):
        name.unlink()
    report = verify_chain(paths.audit_log, witness=paths.audit_witness)
    assert not report.ok and "deleted log" in (report.reason or "")


# --- H3: cache clear --------------------------------------------------------------------


def _precious(tmp_path: Path) -> Path:
    precious = tmp_path / "precious"
    (precious / "objects").mkdir(parents=True)  # a name we use, but not our directory
    (precious / "notes.txt").write_text("mine")
    (precious / "objects" / "thesis.tex").write_text("years of work")
    return precious


def test_h3_cache_clear_on_a_directory_we_did_not_create_deletes_nothing_else(
    tmp_path: Path,
) -> None:
    """``cache_dir = "../precious"``: only entries we recognise are removed
    (here ``objects`` is a real directory of ours by name and owner, but
    nothing else), and the directory itself is kept: it has no marker."""
    precious = _precious(tmp_path)
    os.chown(precious / "objects", NOBODY, NOBODY)  # not ours: kept
    report = Cache(precious).clear_report()
    assert (precious / "notes.txt").read_text() == "mine"
    assert (precious / "objects" / "thesis.tex").read_text() == "years of work"
    assert not report.root_removed and report.removed == ()
    assert any("owned by uid" in item for item in report.skipped)


def test_h3_cache_clear_never_follows_a_symlink_out(tmp_path: Path) -> None:
    precious = _precious(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / "metadata").symlink_to(precious)  # an entry swapped for a link
    report = Cache(cache).clear_report()
    assert (precious / "notes.txt").exists() and (precious / "objects" / "thesis.tex").exists()
    assert (cache / "metadata").is_symlink()
    assert any("not followed" in item for item in report.skipped)
    # The cache directory itself replaced by a link: refused outright.
    link = tmp_path / "linked-cache"
    link.symlink_to(precious)
    before = _tree(precious)
    with pytest.raises(LocalStateError) as info:
        Cache(link).clear_report()
    assert info.value.check == "cache-clear" and "symlink" in str(info.value)
    assert _tree(precious) == before and link.is_symlink()


def test_h3_cache_clear_removes_a_cache_we_created_entirely(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    cache_dir = scenario.consumer.paths.cache_dir
    marker = (cache_dir / MARKER_NAME).read_bytes()
    assert marker.startswith(b"Signature: 8a477f597d28d172789f06886806bc55")
    witness = scenario.consumer.paths.audit_witness
    assert witness.exists()
    report = Cache(cache_dir).clear_report()
    assert report.objects >= 3
    assert not (cache_dir / "objects").exists() and not (cache_dir / "metadata").exists()
    # The audit witness is not cache data: kept, so the directory stays.
    assert witness.exists() and not report.root_removed
    state_files = list(scenario.consumer.paths.state_dir.rglob("high-water.json"))
    assert state_files  # trust state lives elsewhere and is untouched


def test_h3_cache_clear_of_a_fresh_cache_removes_the_directory(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "made-by-us")
    data = b"x = 1\n"
    import hashlib

    cache.put(hashlib.sha256(data).hexdigest(), data)
    report = cache.clear_report()
    assert report.root_removed and not (tmp_path / "made-by-us").exists()


_CLEAR_AS_NOBODY = """
import json, sys
from pathlib import Path
from secure_import.errors import SecureImportError
from secure_import.store.cache import Cache
try:
    Cache(Path(sys.argv[1])).clear_report()
except SecureImportError as exc:
    print(json.dumps(exc.as_dict()))
    sys.exit(3)
"""


def _as_nobody() -> tuple[list[str], dict[str, str]]:
    """An interpreter of this Python version that user nobody can run, and
    the environment that lets it import secure_import and its dependencies
    (the test venv's interpreter may live under root's 0700 home)."""
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, site])}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import secure_import.store.cache"],
                user=NOBODY,
                group=NOBODY,
                capture_output=True,
                env=env,
                timeout=60,
            )
        except OSError:
            continue  # not there, or not executable by nobody
        if probe.returncode == 0:
            return [candidate], env
    pytest.skip("no interpreter user nobody can run (needs a system python of this version)")


def test_h3_unwritable_cache_is_one_clear_error_before_anything_is_deleted(
    request: pytest.FixtureRequest,
) -> None:
    """Run as an unprivileged user (root ignores permissions): a cache with
    one read-only subdirectory is refused with one error, nothing deleted
    (before: a PermissionError traceback after part of the cache was gone)."""
    # Outside pytest's 0700 tree, which nobody could not enter.
    base = Path(tempfile.mkdtemp(prefix="secure-import-nobody-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    os.chmod(base, 0o755)
    home = base / "nobody"
    home.mkdir()
    cache = home / "cache"
    for sub in ("metadata/r1", "objects/aa", "objects/ff"):
        (cache / sub).mkdir(parents=True)
        (cache / sub / "entry").write_bytes(b"data")
    for path in [home, *home.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    os.chmod(cache / "objects" / "ff", 0o500)
    before = _tree(cache)
    python, env = _as_nobody()
    result = subprocess.run(
        [*python, "-c", _CLEAR_AS_NOBODY, str(cache)],
        user=NOBODY,
        group=NOBODY,
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home)},
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    error = json.loads(result.stdout)
    assert error["check"] == "cache-clear"
    assert "nothing was deleted" in error["message"] and "objects/ff" in error["message"]
    assert "Traceback" not in result.stderr
    assert _tree(cache) == before


# --- high-water mark: only ever rises ---------------------------------------------------


def test_high_water_compare_and_swap_never_lowers_the_mark(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.raise_high_water("r", HighWater(3, "c" * 64))
    file = tmp_path / "state" / "repos" / "r" / "high-water.json"
    before = file.read_bytes()
    with pytest.raises(RollbackError):
        store.raise_high_water("r", HighWater(2, "b" * 64))
    with pytest.raises(EquivocationError):
        store.raise_high_water("r", HighWater(3, "d" * 64))
    assert file.read_bytes() == before
    store.raise_high_water("r", HighWater(3, "c" * 64))  # the same mark again: no change
    store.raise_high_water("r", HighWater(4, "e" * 64))
    assert store.high_water("r") == HighWater(4, "e" * 64)


def test_m8_two_processes_cannot_lower_the_high_water_mark(scenario: Scenario) -> None:
    """Process A reads the mark (v1), its manifest answer is held back and
    then answered with an older valid release (v2) while process B accepts
    v3: A's v2 is refused under the lock, the mark stays 3, and a later
    process offered v2 refuses it as a rollback."""
    pub = scenario.publisher
    scenario.publish_baseline()  # v1
    scenario.warm()
    pub.write("good.py", "VALUE = 2\n")
    pub.publish()  # v2
    v2 = (pub.snapshots[2] / MANIFEST_NAME).read_bytes()
    pub.write("good.py", "VALUE = 3\n")
    pub.publish()  # v3, what the server serves
    release = threading.Event()
    held = threading.Event()
    calls: list[int] = []

    def hold_first(request: RequestInfo) -> Response | None:
        calls.append(1)
        if len(calls) == 1:
            held.set()
            release.wait(20)
            return Response(body=v2)
        return None  # B and later: the real v3

    pub.respond(MANIFEST_NAME, hold_first)
    scenario.consumer.new_process()
    from secure_import.repository import Repository

    repo_a = Repository(
        pub.url, keys=[pub.pub_path], ca_bundle=pub.rig.ca_pem_path, paths=scenario.consumer.paths
    )
    repo_b = Repository(
        pub.url, keys=[pub.pub_path], ca_bundle=pub.rig.ca_pem_path, paths=scenario.consumer.paths
    )
    outcome: list[SecureImportError | int] = []

    def process_a() -> None:
        try:
            outcome.append(repo_a.trusted_manifest().manifest.version)
        except SecureImportError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=process_a)
    thread.start()
    assert held.wait(20)
    assert repo_b.trusted_manifest().manifest.version == 3
    release.set()
    thread.join(30)
    assert isinstance(outcome[0], RollbackError), outcome
    state = StateStore(scenario.consumer.paths.state_dir)
    assert state.high_water(repo_a.id).version == 3  # type: ignore[union-attr]
    repo_a.close()
    repo_b.close()
    # A later process offered v2 (with a pointer naming it) refuses it.
    pub.respond(MANIFEST_NAME, Response(body=v2))
    pub.respond(POINTER_NAME, Response(body=make_pointer(v2, 2)))
    scenario.consumer.new_process()
    with pytest.raises(RollbackError):
        importlib.import_module("good")
    assert state.high_water(repo_a.id).version == 3  # type: ignore[union-attr]


# --- audit faults -----------------------------------------------------------------------


_APPEND_UNDER_FSIZE_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
from secure_import.errors import AuditWriteError
from secure_import.store.audit import AuditLog
path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, size + 40))
try:
    AuditLog(path).append("refuse", outcome="refused", module="m" * 200, code="x")
except AuditWriteError as exc:
    print(exc.code)
    sys.exit(3)
"""


def test_audit_append_cut_short_by_a_file_size_limit_is_rolled_back(tmp_path: Path) -> None:
    """A real short write (RLIMIT_FSIZE): the append fails closed and leaves
    no torn record; the next append chains cleanly and the chain verifies."""
    log_dir = tmp_path / "log"
    path = log_dir / "audit.jsonl"
    AuditLog(path).append("load", outcome="ok", module="first")
    before = path.read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", _APPEND_UNDER_FSIZE_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "audit-write-failed"
    assert path.read_bytes() == before  # rolled back, not torn
    log = AuditLog(path)
    log.append("load", outcome="ok", module="after")
    report = verify_chain(path)
    assert report.ok and report.records == 2 and report.repairs == ()


def test_audit_failed_anchor_write_rolls_the_line_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path)
    log.append("load", outcome="ok", module="first")
    before = path.read_bytes()
    from secure_import.store import audit

    def failing_pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit.os, "pwrite", failing_pwrite)
    with pytest.raises(AuditWriteError):
        log.append("load", outcome="ok", module="second")
    monkeypatch.undo()
    assert path.read_bytes() == before
    log.append("load", outcome="ok", module="third")
    assert verify_chain(path).ok


def test_audit_tail_without_final_newline_is_cut_and_noted_not_extended(tmp_path: Path) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path)
    log.append("load", outcome="ok", module="first")
    log.close()
    with open(path, "ab") as handle:
        handle.write(b'{"event":"load","torn')  # a crash mid-write
    assert not verify_chain(path).ok
    AuditLog(path).append("load", outcome="ok", module="next")
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["event"] for r in records] == ["load", "audit-repair", "load"]
    assert "torn record of 21 bytes" in records[1]["message"]
    assert "interrupted append" in records[1]["message"]
    report = verify_chain(path)
    assert report.ok and len(report.repairs) == 1


def test_chain_restart_and_repair_records_keep_the_chain_linear(tmp_path: Path) -> None:
    """The notes are ordinary chained records: editing one breaks the chain."""
    path = tmp_path / "log" / "audit.jsonl"
    witness = tmp_path / "cache" / "audit-witness" / "w.head"
    AuditLog(path, witness=witness).append("load", outcome="ok", module="a")
    path.unlink()
    path.with_name("audit.jsonl.head").unlink()
    AuditLog(path, witness=witness).append("load", outcome="ok", module="b")
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[0])["event"] == "chain-restart"
    assert verify_chain(path, witness=witness).ok
    path.write_bytes(
        lines[0].replace(b"chain-restart", b"chain-restarT") + b"\n" + lines[1] + b"\n"
    )
    assert not verify_chain(path, witness=witness).ok
