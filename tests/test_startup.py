"""What a process pays for secure_import: each path imports only what it needs.

Behaviour, not timing (the timings are in ``bench/``): in a fresh interpreter,
the warm offline path and the frozen path with a warm cache must not import
the signature library, TLS, the HTTP client, the logging machinery,
``dataclasses``/``inspect``, ``pathlib``, ``typing`` or the compression
modules ``shutil`` pulls in.  And the lazy paths stay safe: a tampered cache
on the warm offline path is refused and never run (THREATS L1, L8); the
network stack loaded by add_repo never reaches our finder (THREATS N1: a
remote module shadowing a name a dependency probes for never runs), and the
first import after it verifies as always (THREATS F1).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secure_import.store import childdesc
from secure_import.store.lock import write_lock

from .conftest import Consumer, Publisher, canary_code

#: Modules a warm process that needs no network must never import.
NOT_ON_THE_WARM_PATH = (
    "dataclasses",
    "inspect",
    "logging",
    "pathlib",
    "typing",
    "cryptography",
    "ssl",
    "socket",
    "httpx",
    "httpcore",
    "shutil",
    "bz2",
    "lzma",
    "tempfile",
    "random",
    "secrets",
    "platformdirs",
    "tomllib",
    "difflib",
    "concurrent.futures",
    "importlib.abc",
    "importlib.util",
    "importlib.resources",
    "secure_import.settings",
    "secure_import.publish.githost",
    "secure_import.transport.https",
    "secure_import.verify.envelope",
)

_CHILD = """
import json, sys
import secure_import
from secure_import.store.paths import Paths

cfg = json.loads(sys.argv[1])
repo = secure_import.add_repo(
    cfg["url"], keys=[cfg["key"]], ca_bundle=cfg["ca"], modules=cfg["modules"],
    paths=Paths(cfg["cache"], cfg["state"], cfg["log"]), offline=cfg["offline"], lock=cfg["lock"],
)
after_add = sorted(sys.modules)
import startpkg
value = startpkg.value()
print(json.dumps({
    "value": value,
    "file": startpkg.__file__,
    "after_add": after_add,
    "modules": sorted(sys.modules),
    "requests": 0 if repo._fetcher is None else repo._fetcher.stats.requests,
}))
"""


def _publish(publisher: Publisher) -> None:
    publisher.write(
        "startpkg/__init__.py", "from .core import answer\n\ndef value():\n    return answer()\n"
    )
    publisher.write(
        "startpkg/core.py", "from . import util\n\ndef answer():\n    return util.TWO * 21\n"
    )
    publisher.write("startpkg/util.py", "TWO = 2\n")
    publisher.publish()


def _run(
    consumer: Consumer,
    *,
    offline: bool = False,
    lock: Path | None = None,
    modules: list[str] | None = None,
) -> dict[str, object]:
    """Import startpkg in a fresh ``python -I``; what it saw, as JSON."""
    proc = _spawn(consumer, offline=offline, lock=lock, modules=modules)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _spawn(
    consumer: Consumer,
    *,
    offline: bool = False,
    lock: Path | None = None,
    modules: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the child that imports startpkg, whatever its outcome."""
    paths = consumer.paths
    cfg = {
        "url": consumer.publisher.url,
        "key": str(consumer.publisher.pub_path),
        "ca": str(consumer.publisher.rig.ca_pem_path),
        "modules": modules or ["startpkg"],
        "cache": str(paths.cache_dir),
        "state": str(paths.state_dir),
        "log": str(paths.log_dir),
        "offline": offline,
        "lock": None if lock is None else str(lock),
    }
    # Not a child of this test process: it must not inherit the repositories
    # the test added here (the start-up hook would install them).
    env = {k: v for k, v in os.environ.items() if k != childdesc.ENV_VAR}
    return subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _loaded(result: dict[str, object], forbidden: tuple[str, ...]) -> list[str]:
    modules = result["modules"]
    assert isinstance(modules, list)
    return sorted(
        name for name in modules if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.fixture
def warm(publisher: Publisher, consumer: Consumer) -> Consumer:
    """startpkg published and imported once by another process (cache, memo
    and bytecode written)."""
    _publish(publisher)
    first = _run(consumer)
    assert first["value"] == 42
    second = _run(consumer)  # writes the package's bytecode pack
    assert second["value"] == 42
    return consumer


def test_warm_offline_process_imports_no_crypto_tls_http_logging_or_dataclasses(
    warm: Consumer,
) -> None:
    """The sealed memo stands in for the signature check and the verified
    cache for the network: none of that machinery is imported."""
    before = len(warm.audit())
    result = _run(warm, offline=True)
    assert result["value"] == 42
    assert str(result["file"]).startswith("https://")
    assert result["requests"] == 0
    assert _loaded(result, NOT_ON_THE_WARM_PATH) == []
    # The state after: the three modules were audited as loaded by this run.
    loads = [r for r in warm.audit()[before:] if r["event"] == "load"]
    assert sorted(r["module"] for r in loads) == ["startpkg", "startpkg.core", "startpkg.util"]
    warm.assert_cache_verified()


def test_frozen_process_with_warm_cache_imports_none_of_it_either(
    warm: Consumer, tmp_path: Path
) -> None:
    """A lock file whose manifest is cached: no request, and the same short list."""
    repo = warm.add(modules=["startpkg"])
    lock = tmp_path / "secure-import.lock"
    write_lock(lock, [repo.lock_entry()])
    result = _run(warm, lock=lock)
    assert result["value"] == 42
    assert result["requests"] == 0
    assert _loaded(result, NOT_ON_THE_WARM_PATH) == []


def test_a_cold_process_loads_the_signature_code_in_add_repo_a_warm_one_never(
    publisher: Publisher, consumer: Consumer
) -> None:
    """With no cached manifest the first import verifies a signature: add_repo
    imports the signature library (and the HTTP client) before it, so the
    import statement does not pay for them; a warm offline process imports
    neither, before or after its import."""
    _publish(publisher)
    cold = _run(consumer)
    assert cold["value"] == 42
    after_add = cold["after_add"]
    assert isinstance(after_add, list)
    assert "cryptography" in after_add and "secure_import.verify.envelope" in after_add
    assert "httpx" in after_add
    _run(consumer)  # the bytecode pack
    warm = _run(consumer, offline=True)
    assert _loaded(warm, ("cryptography", "secure_import.verify.envelope", "httpx")) == []


def test_signature_check_still_happens_when_the_memo_is_gone(warm: Consumer) -> None:
    """The list above is short because of the memo, not because a check was
    skipped: without it, the process imports the signature library and
    verifies the envelope (and the import still succeeds)."""
    memo_dir = warm.paths.cache_dir / "verified"
    for item in memo_dir.iterdir():
        item.unlink()
    result = _run(warm, offline=True)
    assert result["value"] == 42
    assert "cryptography" in _loaded(result, ("cryptography",))
    assert any(memo_dir.iterdir()), "the memo was written again after a full verification"


def _warm_with_padded_util(publisher: Publisher, consumer: Consumer, evil: bytes) -> str:
    """startpkg published with a util.py as long as ``evil``, imported twice (cache,
    memo, bytecode seals and the package's pack written); the sha256 of util.py."""
    _publish(publisher)
    util = b"TWO = 2\n#" + b"x" * (len(evil) - 10) + b"\n"
    assert len(util) == len(evil)
    publisher.write("startpkg/util.py", util.decode())
    publisher.publish()
    for _ in range(2):
        assert _run(consumer)["value"] == 42
    return hashlib.sha256(util).hexdigest()


def _bytecode_files(consumer: Consumer) -> list[Path]:
    base = consumer.paths.cache_dir / "bytecode"
    return sorted(p for p in base.rglob("*") if p.is_file())


def test_l1_l8_warm_offline_lazy_path_refuses_a_tampered_cache_never_runs_it(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """THREATS L1/L8 on the path that imports least: a warm offline process
    (memo, no signature library, no network).  The cached util.py is replaced by
    code of the same length and every bytecode seal is altered, so the process
    must fall back to the cached sources: the altered object is re-hashed,
    refused and deleted (audited ``cache-corrupt``), and as the offline
    repository cannot fetch it again the import fails with
    ``CacheCorruptError``; nothing of the package ran,
    nothing unverified is cached, and no load was audited."""
    canary = tmp_path / "canary"
    evil = ("TWO = 3\n" + canary_code(canary)).encode()
    digest = _warm_with_padded_util(publisher, consumer, evil)
    cached = consumer.paths.cache_dir / "objects" / digest[:2] / digest
    assert cached.is_file()
    cached.write_bytes(evil)
    seals = _bytecode_files(consumer)
    assert seals, "the warm runs sealed no bytecode"
    for seal in seals:
        data = bytearray(seal.read_bytes())
        data[-1] ^= 0x01
        seal.write_bytes(bytes(data))
    before = len(consumer.audit())

    proc = _spawn(consumer, offline=True)

    assert proc.returncode != 0
    assert "[cache-corrupt] the cached copy of startpkg/util.py" in proc.stderr, proc.stderr
    assert not canary.exists(), "tampered cached code ran"
    assert not cached.exists(), "the tampered object was left in the cache"
    consumer.assert_cache_verified(absent=evil)
    # Every altered seal was refused (deleted) when read, none was used.
    assert [seal for seal in seals if seal.exists()] == []
    records = consumer.audit()[before:]
    assert not [r for r in records if r["event"] == "load"]
    corrupt = [r for r in records if r["event"] == "cache-corrupt"]
    assert corrupt and corrupt[0]["sha256"] == digest
    refused = [r for r in records if r["event"] == "refuse"]
    assert refused and str(refused[-1]["url"]).endswith("/startpkg/util.py"), records
    assert refused[-1]["code"] == "cache-corrupt"


def test_l8_tampered_bytecode_pack_on_the_warm_path_is_discarded_sources_used(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """THREATS L8: an altered bytecode pack (and module seals) is never
    executed; the warm offline process runs the package from its re-hashed
    cached sources and still imports no signature or network machinery."""
    canary = tmp_path / "canary"
    evil = ("TWO = 3\n" + canary_code(canary)).encode()
    _warm_with_padded_util(publisher, consumer, evil)
    seals = _bytecode_files(consumer)
    altered = {}
    for seal in seals:
        data = bytearray(seal.read_bytes())
        data[-1] ^= 0x01
        seal.write_bytes(bytes(data))
        altered[seal] = bytes(data)

    result = _run(consumer, offline=True)

    assert result["value"] == 42
    assert _loaded(result, NOT_ON_THE_WARM_PATH) == []
    for seal, data in altered.items():
        assert not seal.exists() or seal.read_bytes() != data, f"altered seal kept: {seal}"
    consumer.assert_cache_verified()


def test_network_stack_loaded_in_background_never_runs_remote_code(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """THREATS N1: httpx probes for optional modules (brotli, zstandard) while
    add_repo loads it.  A repository that publishes those names, and that the
    user allows, still never serves them to that load: it runs marked busy,
    so the probe fails as it would without secure_import."""
    canary = tmp_path / "canary"
    for name in ("brotli", "zstandard", "brotlicffi"):
        publisher.write(f"{name}.py", canary_code(canary))
    _publish(publisher)
    result = _run(consumer, modules=["startpkg", "brotli", "zstandard", "brotlicffi"])
    assert result["value"] == 42
    assert not canary.exists(), "a remote module ran inside the network stack's import"
    assert not any(path.startswith(("/brotli", "/zstandard")) for path in publisher.request_paths())
    modules = result["modules"]
    assert isinstance(modules, list)
    assert "httpx" in modules and "brotli" not in modules and "zstandard" not in modules


def test_first_import_after_the_network_stack_load_still_refuses_tampering(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """THREATS F1: the cold import after add_repo loaded the network stack
    verifies every file as always; a tampered one is refused and nothing
    unverified is cached."""
    canary = tmp_path / "canary"
    evil = "TWO = 3\n" + canary_code(canary)
    _publish(publisher)
    # The same length as the signed file: only its hash can tell them apart.
    publisher.write("startpkg/util.py", "TWO = 2\n#" + "x" * (len(evil) - 10) + "\n")
    publisher.publish()
    publisher.tamper("startpkg/util.py", evil.encode())
    cfg_child = textwrap.dedent(_CHILD).replace("value = startpkg.value()", "value = 0")
    paths = consumer.paths
    cfg = {
        "url": publisher.url,
        "key": str(publisher.pub_path),
        "ca": str(publisher.rig.ca_pem_path),
        "modules": ["startpkg"],
        "cache": str(paths.cache_dir),
        "state": str(paths.state_dir),
        "log": str(paths.log_dir),
        "offline": False,
        "lock": None,
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-c", cfg_child, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "HashMismatchError" in proc.stderr or "hash-mismatch" in proc.stderr
    assert not canary.exists()
    consumer.assert_cache_verified(absent=evil.encode())
    assert any(r.get("code") == "hash-mismatch" for r in consumer.refusals())
