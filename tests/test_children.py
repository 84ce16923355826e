"""Child interpreters inherit the parent's repositories (issue 18), and the
environment variable that names the description cannot be a way in (THREATS H10)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secure_import.store import childdesc
from secure_import.store.audit import AuditLog

from .conftest import Consumer, Publisher, canary_code

CHILD = (
    "import remote_pkg, json; print(json.dumps([remote_pkg.__spec__.origin, remote_pkg.square(7)]))"
)


def publish_remote(publisher: Publisher, canary: Path | None = None) -> None:
    body = "def square(x):\n    return x * x\n"
    if canary is not None:
        body = canary_code(canary) + body
    publisher.write("remote_pkg/__init__.py", body)
    publisher.publish()


def _env_audit(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "env-log" / "audit.jsonl"
    return list(AuditLog(log).records()) if log.exists() else []


def _child(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_subprocess_child_imports_the_parents_remote_module_without_set_up(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    publish_remote(publisher)
    repo = consumer.add()
    ident = os.environ[childdesc.ENV_VAR]
    assert childdesc.is_id(ident)
    proc = _child(CHILD)
    assert proc.returncode == 0, proc.stderr
    origin, value = json.loads(proc.stdout)
    assert origin == repo.url + "remote_pkg/__init__.py" and value == 49
    # The child audited that it inherited, and its load went to the parent's log.
    (inherited,) = [r for r in _env_audit(tmp_path) if r["event"] == "child-config"]
    assert inherited["outcome"] == "ok" and ident in str(inherited["message"])
    loads = [r for r in consumer.audit() if r["event"] == "load"]
    assert [r["module"] for r in loads] == ["remote_pkg"]
    # The description is private and sealed; removing the repository withdraws it.
    path = tmp_path / "env-state" / "children" / ident
    assert (os.lstat(path).st_mode & 0o777) == 0o600
    from secure_import import remove_repo

    remove_repo(repo)
    assert childdesc.ENV_VAR not in os.environ and not path.exists()


def test_child_keeps_the_parents_pins_not_weaker(publisher: Publisher, consumer: Consumer) -> None:
    """modules= and the pinned key reach the child: a name the parent did not
    allow is not served there either."""
    publish_remote(publisher)
    publisher.write("other_pkg/__init__.py", "X = 1\n")
    publisher.publish()
    consumer.add(modules=["remote_pkg"])
    proc = _child("import other_pkg")
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_multiprocessing_pool_maps_a_function_defined_in_a_remote_module(
    publisher: Publisher, consumer: Consumer, method: str
) -> None:
    """Each start method; forkserver explicitly (Python 3.14's Linux default)."""
    publish_remote(publisher)
    consumer.add()
    import remote_pkg  # type: ignore[import-not-found]

    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        assert pool.map(remote_pkg.square, range(6)) == [0, 1, 4, 9, 16, 25]


def _refused(tmp_path: Path) -> list[dict[str, object]]:
    return [
        r
        for r in _env_audit(tmp_path)
        if r["event"] == "child-config" and r["outcome"] == "refused"
    ]


def test_h10_env_var_pointing_at_a_hostile_configuration_file_is_refused_and_audited(
    publisher: Publisher, tmp_path: Path, canary: Path
) -> None:
    publish_remote(publisher, canary)
    hostile = tmp_path / "hostile.toml"
    hostile.write_text(
        f'[repositories.evil]\nurl = "{publisher.url}"\nkeys = ["{publisher.pub_path}"]\n'
        'modules = ["remote_pkg"]\n'
    )
    env = dict(os.environ, **{childdesc.ENV_VAR: str(hostile)})
    proc = _child("import remote_pkg", env)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    assert "ignored $SECURE_IMPORT_CHILD" in proc.stderr
    assert not canary.exists()
    (record,) = _refused(tmp_path)
    assert record["code"] == "child-config-refused" and "not a path" in str(record["message"])


def test_h10_forged_description_in_the_state_directory_is_refused_deleted_and_audited(
    publisher: Publisher, consumer: Consumer, tmp_path: Path, canary: Path
) -> None:
    """A description written without the state key (by someone who can write
    a file there but does not hold the key, or an edited genuine one)."""
    publish_remote(publisher, canary)
    consumer.add()
    genuine = os.environ[childdesc.ENV_VAR]
    folder = tmp_path / "env-state" / "children"
    forged_id = f"{os.getpid()}-{'ab' * 16}"
    data = bytearray((folder / genuine).read_bytes())
    data[-3] ^= 1  # edit one byte of the body: the seal no longer matches
    fd = os.open(folder / forged_id, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, bytes(data))
    os.close(fd)
    env = dict(os.environ, **{childdesc.ENV_VAR: forged_id})
    proc = _child("import remote_pkg", env)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    assert not canary.exists() and not (folder / forged_id).exists()
    (record,) = _refused(tmp_path)
    assert "seal" in str(record["message"])


def test_h10_genuine_description_copied_to_another_state_directory_is_refused(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """The seal binds the state directory: a copy of a description *and* the
    key into a directory the attacker chose does not verify there."""
    publish_remote(publisher)
    consumer.add()
    ident = os.environ[childdesc.ENV_VAR]
    other = tmp_path / "other-state"
    shutil.copytree(tmp_path / "env-state", other)
    env = dict(os.environ, SECURE_IMPORT_STATE_DIR=str(other))
    proc = _child("import remote_pkg", env)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    assert "seal" in proc.stderr
    assert not (other / "children" / ident).exists()


@pytest.mark.parametrize("problem", ["world-readable", "symlink"])
def test_h10_description_file_that_is_not_private_is_refused(
    publisher: Publisher, consumer: Consumer, tmp_path: Path, problem: str
) -> None:
    publish_remote(publisher)
    consumer.add()
    ident = os.environ[childdesc.ENV_VAR]
    path = tmp_path / "env-state" / "children" / ident
    if problem == "world-readable":
        os.chmod(path, 0o644)
    else:
        target = tmp_path / "elsewhere"
        shutil.copy(path, target)
        path.unlink()
        path.symlink_to(target)
    proc = _child("import remote_pkg")
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    (record,) = _refused(tmp_path)
    assert "description file is" in str(record["message"])


def _fork_and_import(name: str) -> tuple[int, str]:
    """Fork; the child imports ``name`` and reports ``[origin, square(7)]``
    through a pipe.  Returns the child's exit status and what it wrote."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            module = __import__(name)
            os.write(write_end, json.dumps([module.__spec__.origin, module.square(7)]).encode())
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_child_fetches_over_its_own_connection_not_the_parents_keep_alive(
    publisher: Publisher, consumer: Consumer
) -> None:
    """A forked child inherits the parent's HTTP client with its open
    keep-alive TLS connection.  Writing on it from two processes would mix
    two TLS streams on one socket (the server or the parent reads garbage,
    or one process reads the other's answer); the child must drop the copied
    pool and connect afresh, and the parent's connection must keep working."""
    for name in ("remote_pkg", "late_pkg", "after_pkg"):
        # Different bytes per package: the cache is content-addressed.
        publisher.write(
            f"{name}/__init__.py", f"NAME = {name!r}\n\ndef square(x):\n    return x * x\n"
        )
    publisher.publish()
    repo = consumer.add()
    import remote_pkg

    assert remote_pkg.square(3) == 9
    server = publisher.server
    parent_peers = {r.peer for r in server.requests}
    assert parent_peers and all(parent_peers)
    seen = len(server.requests)

    code, out = _fork_and_import("late_pkg")

    assert code == 0, out
    assert json.loads(out) == [repo.url + "late_pkg/__init__.py", 49]
    child_requests = server.requests[seen:]
    assert any("late_pkg" in r.path for r in child_requests), child_requests
    assert not {r.peer for r in child_requests} & parent_peers, "child used the parent's socket"
    # The parent's own client still works after the child has gone.
    seen = len(server.requests)
    import after_pkg  # type: ignore[import-not-found]

    assert after_pkg.square(4) == 16
    after = server.requests[seen:]
    assert any("after_pkg" in r.path for r in after)
    assert {r.peer for r in after} <= parent_peers  # over its own kept-alive connection
    assert "late_pkg" not in sys.modules  # imported in the child only
    loads = [r["module"] for r in consumer.audit() if r["event"] == "load"]
    assert loads.count("late_pkg") == 1 and "after_pkg" in loads


def _import_and_report(name: str) -> tuple[str, int]:
    module = __import__(name)
    return module.__spec__.origin, module.square(7)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_pool_worker_imports_a_module_the_parent_never_imported(
    publisher: Publisher, consumer: Consumer
) -> None:
    """The multiprocessing ``fork`` start method, after the parent has used
    its connection: the workers fetch on connections of their own."""
    for name in ("remote_pkg", "worker_pkg"):
        publisher.write(
            f"{name}/__init__.py", f"NAME = {name!r}\n\ndef square(x):\n    return x * x\n"
        )
    publisher.publish()
    repo = consumer.add()
    import remote_pkg

    assert remote_pkg.square(2) == 4
    parent_peers = {r.peer for r in publisher.server.requests}
    seen = len(publisher.server.requests)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_import_and_report, ["worker_pkg"] * 4)
    assert results == [(repo.url + "worker_pkg/__init__.py", 49)] * 4
    worker_requests = publisher.server.requests[seen:]
    assert worker_requests and not {r.peer for r in worker_requests} & parent_peers
    assert "worker_pkg" not in sys.modules
