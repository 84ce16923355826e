"""The hash-chained audit log: one linear chain whoever appends (instances,
threads, forked children), rotation and deletion followed, planted symlinks
refused, failures reported and recovered from.  Real files under ``tmp_path``."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_import.errors import AuditWriteError
from secure_import.store import auditfile, auditformat
from secure_import.store.audit import GENESIS, AuditLog, anchor_path, verify_chain

HAS_PROC_FD = Path("/proc/self/fd").is_dir()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "audit.jsonl"


#: Which writer ``_append`` uses for load records: every test that appends
#: through it runs once with the general ``append`` and once with the
#: per-module ``append_load`` (a separate, faster way to the same lines).
_VIA = {"load": "append"}


@pytest.fixture(autouse=True, params=["append", "append_load"])
def _load_writer(request: pytest.FixtureRequest) -> None:
    _VIA["load"] = request.param


def _append(log: AuditLog, n: int, event: str = "load") -> None:
    for i in range(n):
        module, url = f"pkg.m{i}", f"https://example.org/m{i}.py"
        if event == "load" and _VIA["load"] == "append_load":
            log.append_load(
                module=module,
                url=url,
                sha256="ab" * 32,
                repo="https://example.org/",
                manifest_version=i,
                key_id="k1",
                host="example.org",
            )
        else:
            log.append(event, outcome="ok", module=module, url=url)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _descriptors_of(*paths: Path) -> dict[str, str]:
    """Descriptor number -> target, for descriptors pointing at ``paths``."""
    wanted = {str(p) for p in paths}
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target in wanted:
            found[name] = target
    return found


def _open_files() -> set[str]:
    """What this process's descriptors point at (Linux ``/proc``)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass  # the descriptor listdir itself used
    return found


def _descriptor_of(path: Path) -> int:
    matches = [
        int(name)
        for name in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{name}") == str(path)
    ]
    assert len(matches) == 1, matches
    return matches[0]


def _assert_chain(path: Path, records: int) -> None:
    report = verify_chain(path)
    assert report.ok, report
    assert report.records == records
    assert json.loads(_lines(path)[0])["prev"] == GENESIS


def test_many_appends_from_one_instance_form_one_chain(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 300)
    _assert_chain(path, 300)
    log.close()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_descriptors_are_kept_open_not_opened_per_record(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 1)
    ours = _descriptors_of(path, anchor_path(path))
    assert len(ours) == 2
    _append(log, 100)
    # Only our two files are looked at: other tests' threads may open and
    # close descriptors of their own meanwhile.
    assert _descriptors_of(path, anchor_path(path)) == ours
    log.close()
    assert str(path) not in _open_files() and str(anchor_path(path)) not in _open_files()


def test_two_instances_on_one_path_interleave_into_one_chain(path: Path) -> None:
    first, second = AuditLog(path), AuditLog(path)
    for i in range(100):
        (first if i % 3 else second).append("load", outcome="ok", module=f"m{i}")
    _assert_chain(path, 100)
    modules = [json.loads(line)["module"] for line in _lines(path)]
    assert modules == [f"m{i}" for i in range(100)]
    first.close()
    second.close()


@pytest.mark.parametrize("opened_first", [False, True])
@pytest.mark.parametrize("round_", range(3))  # a lost race shows only sometimes
def test_four_threads_sharing_one_instance_keep_the_chain_linear(
    path: Path, opened_first: bool, round_: int
) -> None:
    log = AuditLog(path)
    if opened_first:
        log.append("start", outcome="ok")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            _append(log, 50, event=f"thread-{n}")
        except BaseException as exc:  # noqa: BLE001 - asserted empty below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads mid-append, not once per 5 ms
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    _assert_chain(path, 200 + opened_first)
    events = [json.loads(line)["event"] for line in _lines(path)]
    assert all(events.count(f"thread-{n}") == 50 for n in range(4))
    log.close()


def test_rotation_by_rename_starts_a_fresh_chain_and_leaves_the_old_file_intact(
    path: Path,
) -> None:
    log = AuditLog(path)
    _append(log, 5)
    rotated = path.with_name(path.name + ".1")
    os.rename(path, rotated)
    old_bytes = rotated.read_bytes()
    _append(log, 3)
    _assert_chain(path, 3)
    assert rotated.read_bytes() == old_bytes
    # Its anchor stayed behind at the live path, so the rotated file verifies
    # as a chain without the truncation check.
    assert not anchor_path(rotated).exists()
    old = verify_chain(rotated)
    assert old.ok and old.records == 5
    log.close()


def test_rotating_log_and_anchor_together_leaves_the_old_anchor_alone(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 5)
    rotated = path.with_name(path.name + ".1")
    os.rename(path, rotated)
    os.rename(anchor_path(path), anchor_path(rotated))
    old_anchor = anchor_path(rotated).read_bytes()
    _append(log, 2)
    assert anchor_path(rotated).read_bytes() == old_anchor  # not written through
    old = verify_chain(rotated)
    assert old.ok and old.records == 5  # including the truncation check
    _assert_chain(path, 2)
    assert anchor_path(path).exists()
    log.close()


def test_deleted_log_is_recreated_with_a_new_chain(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 4)
    path.unlink()
    _append(log, 2)
    _assert_chain(path, 2)
    path.unlink()
    anchor_path(path).unlink()
    _append(log, 1)
    _assert_chain(path, 1)
    log.close()


def test_symlink_planted_at_the_log_path_is_refused_and_not_written_through(
    path: Path, tmp_path: Path
) -> None:
    log = AuditLog(path)
    _append(log, 1)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"precious\n")
    anchor_before = anchor_path(path).read_bytes()
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(AuditWriteError) as info:
        _append(log, 1)
    assert info.value.check == "audit-write"
    assert target.read_bytes() == b"precious\n"
    assert anchor_path(path).read_bytes() == anchor_before
    # Once the link is gone the next append works again.
    path.unlink()
    _append(log, 1)
    _assert_chain(path, 1)
    assert target.read_bytes() == b"precious\n"
    log.close()


def test_symlink_planted_at_the_anchor_path_is_refused_before_the_line_is_written(
    path: Path, tmp_path: Path
) -> None:
    log = AuditLog(path)
    _append(log, 2)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"precious\n")
    log_before = path.read_bytes()
    anchor_path(path).unlink()
    anchor_path(path).symlink_to(target)
    with pytest.raises(AuditWriteError):
        _append(log, 1)
    assert target.read_bytes() == b"precious\n"
    assert path.read_bytes() == log_before
    log.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_appending_through_the_inherited_instance_keeps_one_chain(
    path: Path,
) -> None:
    per_process = 200
    log = AuditLog(path)
    log.append("start", outcome="ok")  # the descriptors exist before the fork
    go_read, go_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)
            _append(log, per_process, event="child")
            code = 0
        finally:
            os._exit(code)
    os.close(go_read)
    os.write(go_write, b"g")
    os.close(go_write)
    _append(log, per_process, event="parent")
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _assert_chain(path, 1 + 2 * per_process)
    records = [json.loads(line) for line in _lines(path)]
    assert {r["pid"] for r in records if r["event"] == "child"} == {child}
    assert [r["event"] for r in records].count("child") == per_process
    # The parent's descriptors still work after the child closed its copies.
    _append(log, 1)
    _assert_chain(path, 2 + 2 * per_process)
    log.close()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_a_descriptor_closed_behind_its_back_costs_one_append_not_all_later_ones(
    path: Path,
) -> None:
    log = AuditLog(path)
    _append(log, 2)
    os.close(_descriptor_of(path))
    with pytest.raises(AuditWriteError):
        _append(log, 1)
    _append(log, 1)
    _assert_chain(path, 3)
    log.close()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
@pytest.mark.parametrize("which", ["log", "anchor"])
def test_a_reused_descriptor_number_is_neither_written_nor_closed(
    path: Path, tmp_path: Path, which: str
) -> None:
    log = AuditLog(path)
    _append(log, 2)
    number = _descriptor_of(path if which == "log" else anchor_path(path))
    os.close(number)
    other = tmp_path / "someone-elses.txt"
    other.write_bytes(b"theirs\n")
    reused = os.open(other, os.O_RDWR)
    try:
        assert reused == number  # the lowest free number
        _append(log, 1)
        assert other.read_bytes() == b"theirs\n"
        log.close()
        os.fstat(reused)  # still open: close() left it to its owner
    finally:
        os.close(reused)
    _assert_chain(path, 3)


@pytest.mark.skipif(not hasattr(os, "fork") or not HAS_PROC_FD, reason="needs fork(), /proc")
def test_forked_child_is_excluded_by_the_lock_its_parent_holds(path: Path) -> None:
    """Deterministic form of the test above: a child still writing through the
    inherited description would share the parent's flock and not wait for it."""
    fcntl = pytest.importorskip("fcntl")
    log = AuditLog(path)
    log.append("start", outcome="ok")
    parents = _descriptor_of(path)  # the log's own descriptor, locked below
    fcntl.flock(parents, fcntl.LOCK_EX)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                auditfile.LOCK_TIMEOUT = 0.2
                try:
                    log.append("child", outcome="ok")
                    code = 4  # got in although the parent holds the lock
                except AuditWriteError:
                    code = 3  # waited for the parent's lock, as it should
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
    finally:
        fcntl.flock(parents, fcntl.LOCK_UN)
    assert os.waitstatus_to_exitcode(status) == 3
    _append(log, 1)
    _assert_chain(path, 2)
    log.close()


def test_close_twice_is_harmless_and_append_after_close_reopens(path: Path) -> None:
    log = AuditLog(path)
    log.close()  # before anything was opened
    _append(log, 2)
    log.close()
    log.close()
    _append(log, 2)
    _assert_chain(path, 4)
    log.close()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_a_collected_log_closes_its_descriptors(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 1)
    assert str(path) in _open_files()
    del log
    gc.collect()
    assert str(path) not in _open_files() and str(anchor_path(path)) not in _open_files()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_subprocesses_do_not_inherit_the_descriptors(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 1)
    child = (
        "import os\n"
        "for n in os.listdir('/proc/self/fd'):\n"
        "    try: print(os.readlink('/proc/self/fd/' + n))\n"
        "    except OSError: pass\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        close_fds=False,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert str(path) not in out and str(anchor_path(path)) not in out
    log.close()


def test_unwritable_log_path_fails_and_the_next_append_recovers(path: Path) -> None:
    log = AuditLog(path)
    _append(log, 3)
    path.unlink()
    path.mkdir()  # cannot be opened for appending, even by root
    with pytest.raises(AuditWriteError) as info:
        _append(log, 1)
    assert info.value.code == "audit-write-failed"
    path.rmdir()
    _append(log, 1)
    _assert_chain(path, 1)
    log.close()


# (A read-only directory is not a case here: the tests also run as root, who
# writes there anyway; a path that cannot be opened is tested above.)
@pytest.mark.parametrize("how", ["not-a-directory", "group-writable"])
def test_unusable_log_directory_fails_closed(tmp_path: Path, how: str) -> None:
    directory = tmp_path / "logs"
    if how == "not-a-directory":
        directory.write_text("")
    else:
        directory.mkdir()
        directory.chmod(0o770)
    log = AuditLog(directory / "audit.jsonl")
    try:
        with pytest.raises(AuditWriteError) as info:
            _append(log, 1)
        assert info.value.check == "audit-write"
        assert not (directory / "audit.jsonl").exists() or how == "not-a-directory"
    finally:
        if directory.is_dir():
            directory.chmod(0o700)
    log.close()


def test_lock_held_too_long_fails_closed_and_the_next_append_recovers(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fcntl = pytest.importorskip("fcntl")
    log = AuditLog(path)
    _append(log, 1)
    monkeypatch.setattr(auditfile, "LOCK_TIMEOUT", 0.05)  # not 30 s in a test
    holder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(AuditWriteError):
            _append(log, 1)
    finally:
        os.close(holder)
    _append(log, 1)
    _assert_chain(path, 2)
    log.close()


def test_filelock_is_not_imported_where_flock_exists() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, secure_import.store.audit; print('filelock' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "False"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _json))
def test_the_shared_encoder_writes_exactly_what_json_dumps_writes(value: object) -> None:
    assert auditformat.ENCODER.encode(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":")
    )


@given(
    st.dictionaries(st.text().filter(lambda key: key != "prev"), _json),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_a_line_split_around_prev_is_exactly_json_dumps_of_the_record(
    record: dict[str, object], prev: str
) -> None:
    head, tail = auditformat.split_record(record)
    assert f'{head}"{prev}"{tail}' == json.dumps(
        {**record, "prev": prev}, sort_keys=True, separators=(",", ":")
    )


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))  # to 9999-12-31
def test_timestamps_have_the_isoformat_of_datetime(micros: int) -> None:
    second, fraction = divmod(micros, 1_000_000)
    expected = datetime.fromtimestamp(second, UTC).replace(microsecond=fraction)
    assert auditformat.timestamp(micros) == expected.isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(module=st.text(), url=st.text(), version=st.integers())
def test_each_line_is_json_dumps_of_the_returned_record(
    path: Path, module: str, url: str, version: int
) -> None:
    log = AuditLog(path)
    record = log.append("load", outcome="ok", module=module, url=url, manifest_version=version)
    log.close()
    expected = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    assert _lines(path)[-1] == expected
    assert verify_chain(path).ok


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(
    module=st.text(),
    url=st.text(),
    sha256=st.text(),
    repo=st.text(),
    key_id=st.text(),
    host=st.text(),
    version=st.integers(),
)
def test_a_load_record_is_the_line_append_writes_for_the_same_fields(
    path: Path,
    module: str,
    url: str,
    sha256: str,
    repo: str,
    key_id: str,
    host: str,
    version: int,
) -> None:
    """``append_load`` fills a template instead of encoding a dict: its line
    must be exactly ``json.dumps`` of the record ``append`` would have built
    (whatever the strings hold: quotes, newlines, non-ASCII)."""
    log = AuditLog(path)
    log.append_load(
        module=module,
        url=url,
        sha256=sha256,
        repo=repo,
        manifest_version=version,
        key_id=key_id,
        host=host,
    )
    general = log.append(
        "load",
        outcome="ok",
        module=module,
        url=url,
        sha256=sha256,
        repo=repo,
        manifest_version=version,
        key_id=key_id,
        host=host,
    )
    log.close()
    fast_line, general_line = _lines(path)[-2:]
    fast = json.loads(fast_line)
    assert fast_line == json.dumps(fast, sort_keys=True, separators=(",", ":")).encode()
    assert general_line == json.dumps(general, sort_keys=True, separators=(",", ":")).encode()
    different = {"time", "prev"}
    assert {k: v for k, v in fast.items() if k not in different} == {
        k: v for k, v in general.items() if k not in different
    }
    assert general["prev"] == auditformat.line_hash(fast_line)
    assert verify_chain(path).ok


def test_a_load_record_with_unexpected_types_is_still_valid_json(path: Path) -> None:
    """A non-int version or non-str field takes the general encoder, never
    the template (which would write it unquoted)."""
    log = AuditLog(path)
    log.append_load(
        module="m", url="u", sha256="s", repo="r", manifest_version=True, key_id="k", host="h"
    )  # a bool is not an int here
    log.append_load(
        module="m",
        url="u",
        sha256="s",
        repo="r",
        manifest_version='3,"pid":1',  # type: ignore[arg-type]
        key_id="k",
        host="h",
    )
    log.close()
    first, second = (json.loads(line) for line in _lines(path))
    assert first["manifest_version"] is True
    assert second["manifest_version"] == '3,"pid":1' and second["pid"] == os.getpid()
    assert verify_chain(path).ok
