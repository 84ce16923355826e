"""Baked caches (issue 16): ``cache warm``, ``cache verify``, read-only caches.

An image is built by warming the cache from a configuration or lock file;
it runs frozen and offline from that cache on a read-only layer, and
``cache verify`` is its health check.  Each test asserts the behaviour and
the state after it: what was fetched, that no socket was opened, that nothing
was written to a read-only cache, what a problem report names.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from secure_import.store.bytecode import BytecodeStore
from secure_import.store.paths import Paths
from secure_import.verify.bundle import bundle_entries

from .attacks.test_host_state import NOBODY, _as_nobody
from .clirunner import run_cli, run_json
from .conftest import Consumer, Publisher, forget_remote_modules
from .test_offline_guard import install_socket_guard

PACKAGE = {
    "bakepkg/__init__.py": "from .a import A\nfrom .b import B\n",
    "bakepkg/a.py": "A = 'a'\n",
    "bakepkg/b.py": "from .c import C\nB = 'b' + C\n",
    "bakepkg/c.py": "C = 'c'\n",
    "bakepkg/data/words.txt": "alpha beta\n",
    "bakesingle.py": "S = 'single'\n",
}


def _publish(publisher: Publisher) -> None:
    for rel, text in PACKAGE.items():
        publisher.write(rel, text)
    publisher.publish()


def _config(tmp: Path, publisher: Publisher, name: str = "bake.toml", **repo: str) -> Path:
    lines = [
        "[repositories.bake]",
        f'url = "{publisher.url}"',
        f'keys = ["{publisher.pub_path}"]',
        'modules = ["bakepkg", "bakesingle"]',
        f'ca_bundle = "{publisher.rig.ca_pem_path}"',
        *(f"{k} = {v}" for k, v in repo.items()),
    ]
    path = tmp / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(paths: Paths) -> dict[str, str]:
    return {
        "SECURE_IMPORT_CACHE_DIR": str(paths.cache_dir),
        "SECURE_IMPORT_STATE_DIR": str(paths.state_dir),
        "SECURE_IMPORT_LOG_DIR": str(paths.log_dir),
        "SECURE_IMPORT_NO_PROJECT": "1",
    }


def _tree(base: Path) -> dict[str, tuple[int, bytes | None, int]]:
    """Every entry under ``base``: mode, content (files), mtime (ns)."""
    found: dict[str, tuple[int, bytes | None, int]] = {}
    for path in sorted(base.rglob("*")):
        info = os.lstat(path)
        data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[str(path.relative_to(base))] = (info.st_mode, data, info.st_mtime_ns)
    return found


def _warm(tmp: Path, consumer: Consumer, config: Path, *more: str, expect: int = 0) -> dict:
    return run_json(  # type: ignore[no-any-return]
        tmp, "cache", "warm", "--config", config, *more, expect=expect, **_env(consumer.paths)
    )


def _import_all() -> tuple[str, str, str]:
    pkg = importlib.import_module("bakepkg")
    single = importlib.import_module("bakesingle")
    import importlib.resources as resources

    words = resources.files("bakepkg").joinpath("data/words.txt").read_text()
    return pkg.A + pkg.B, single.S, words


# --- cache warm -----------------------------------------------------------------------


def test_cache_warm_then_an_offline_import_opens_no_socket_and_writes_nothing(
    publisher: Publisher,
    consumer: Consumer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _publish(publisher)
    report = _warm(tmp_path, consumer, _config(tmp_path, publisher))
    assert report["ok"]
    [repo] = report["repositories"]
    assert repo["version"] == 1 and repo["manifest_sha256"]
    packages = {p["name"]: p for p in repo["packages"]}
    assert packages["bakepkg"]["files"] == 5 and packages["bakepkg"]["fetched"] == 5
    assert packages["bakesingle"]["files"] == 1
    # The package went through the import path: one bundle, not file by file.
    paths = publisher.request_paths()
    assert sum(p.startswith("/secure-import-bundles/bakepkg.") for p in paths) == 1, paths
    # Every signed file is cached under its digest; every module has sealed
    # bytecode and the package its pack (what a second import would seal).
    files = publisher.signed_files()
    for entry in files.values():
        assert consumer.cached_objects()[entry.sha256] == (publisher.out / entry.path).read_bytes()
    store = BytecodeStore(consumer.paths.cache_dir, consumer.paths.state_dir)
    modules = [(e.sha256, publisher.url + e.path) for e in bundle_entries(files, "bakepkg")]
    assert store.check_pack(modules) is None
    assert all(store.check(sha256=s, url=u) is None for s, u in modules)

    before = _tree(consumer.paths.cache_dir)
    publisher.server.clear_requests()
    attempts = install_socket_guard(monkeypatch)
    consumer.new_process(offline=True, modules=["bakepkg", "bakesingle"])
    assert _import_all() == ("abc", "single", "alpha beta\n")
    assert attempts == [] and publisher.request_paths() == []
    after = _tree(consumer.paths.cache_dir)
    witness = str(consumer.paths.audit_witness.parent.relative_to(consumer.paths.cache_dir))
    assert {k: v for k, v in after.items() if not k.startswith(witness)} == {
        k: v for k, v in before.items() if not k.startswith(witness)
    }
    loads = [r for r in consumer.audit() if r["event"] == "load"]
    assert {r["module"] for r in loads} >= {"bakepkg", "bakepkg.a", "bakesingle"}


def test_a_second_warm_fetches_nothing_new(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    _warm(tmp_path, consumer, config)
    publisher.server.clear_requests()
    again = _warm(tmp_path, consumer, config)
    assert again["repositories"][0]["fetched"] == 0
    assert publisher.request_paths() == ["/secure-import-current.json"]  # freshness only


def test_cache_warm_refuses_a_tampered_file_and_exits_1_with_nothing_unverified_cached(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    evil = PACKAGE["bakepkg/b.py"].replace("'b'", "'x'").encode()  # same length
    publisher.tamper("bakepkg/b.py", evil)
    ran = run_cli(
        tmp_path,
        "cache",
        "warm",
        "--config",
        _config(tmp_path, publisher),
        **_env(consumer.paths),
    )
    assert ran.returncode == 1
    assert "FAILED bake" in ran.stdout and "hash-mismatch" in ran.stdout
    # The URL actually fetched: the package bundle.
    assert f"{publisher.url}secure-import-bundles/bakepkg." in ran.stdout
    consumer.assert_cache_verified(absent=evil)


def test_cache_warm_frozen_to_a_lock_file_bakes_exactly_the_locked_release(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    lock = tmp_path / "bake.lock"
    locked = run_json(
        tmp_path, "lock", "--config", config, "--output", lock, **_env(consumer.paths)
    )
    assert locked["repositories"][0]["manifest_version"] == 1
    warmed = _warm(tmp_path, consumer, config, "--lock-file", lock)
    assert (
        warmed["repositories"][0]["manifest_sha256"] == locked["repositories"][0]["manifest_sha256"]
    )
    # The publisher moves on; a fresh image built from the same lock refuses
    # the new release rather than baking something the lock does not pin.
    publisher.write("bakepkg/a.py", "A = 'new'\n")
    publisher.publish()
    fresh = Paths(
        cache_dir=tmp_path / "fresh-cache",
        state_dir=tmp_path / "fresh-state",
        log_dir=tmp_path / "fresh-log",
    )
    ran = run_cli(
        tmp_path, "--json", "cache", "warm", "--config", config, "--lock-file", lock, **_env(fresh)
    )
    assert ran.returncode == 1
    error = json.loads(ran.stdout)["repositories"][0]["error"]
    assert error["code"] == "lock-mismatch"
    assert not any((fresh.cache_dir / "objects").rglob("*")) if fresh.cache_dir.exists() else True


def test_cache_warm_offline_is_a_usage_error(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    ran = run_cli(
        tmp_path,
        "cache",
        "warm",
        "--offline",
        "--config",
        _config(tmp_path, publisher),
        **_env(consumer.paths),
    )
    assert ran.returncode == 2 and "drop --offline" in ran.stderr


# --- cache verify -----------------------------------------------------------------------


def _flip(path: Path, at: int = -2) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def _verify(tmp: Path, consumer: Consumer, config: Path, *more: str, expect: int) -> dict:
    return run_json(  # type: ignore[no-any-return]
        tmp, "cache", "verify", "--config", config, *more, expect=expect, **_env(consumer.paths)
    )


def test_cache_verify_passes_on_a_warm_cache_and_changes_nothing(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    _warm(tmp_path, consumer, config)
    publisher.close()  # a health check never needs the network
    before = _tree(consumer.paths.cache_dir)
    audit_before = consumer.audit()
    report = _verify(tmp_path, consumer, config, "--complete", expect=0)
    assert report["ok"] and report["problems"] == [] and report["missing"] == {}
    assert report["good"]["objects"] == 6 and report["good"]["manifests"] == 1
    assert report["good"]["memos"] == 1 and report["good"]["seals"] >= 5
    assert _tree(consumer.paths.cache_dir) == before
    assert consumer.audit() == audit_before


def test_l1_cache_verify_reports_a_flipped_byte_in_an_object_and_in_a_bytecode_seal(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """THREATS L1/L8: a cache edited on disk.  Both entries are named, with
    what was expected and what was found, and the exit code is 1; without
    ``--repair`` nothing is deleted."""
    _publish(publisher)
    config = _config(tmp_path, publisher)
    _warm(tmp_path, consumer, config)
    entry = publisher.signed_files()["bakepkg/a.py"]
    obj = consumer.paths.cache_dir / "objects" / entry.sha256[:2] / entry.sha256
    _flip(obj)
    store = BytecodeStore(consumer.paths.cache_dir, consumer.paths.state_dir)
    single = publisher.signed_files()["bakesingle.py"]
    seal = store.path_for(sha256=single.sha256, url=publisher.url + "bakesingle.py")
    assert seal is not None
    _flip(seal)
    report = _verify(tmp_path, consumer, config, expect=1)
    assert not report["ok"]
    by_check = {p["check"]: p for p in report["problems"]}
    bad_object = by_check["object-sha256"]
    assert bad_object["entry"] == f"objects/{entry.sha256[:2]}/{entry.sha256}"
    assert bad_object["expected"] == entry.sha256
    assert bad_object["got"] == hashlib.sha256(obj.read_bytes()).hexdigest()
    bad_seal = by_check["bytecode-seal"]
    assert bad_seal["entry"].endswith(seal.name) and "HMAC" in bad_seal["got"]
    assert obj.exists() and seal.exists()  # verify alone deletes nothing
    human = run_cli(tmp_path, "cache", "verify", "--config", config, **_env(consumer.paths))
    assert human.returncode == 1
    assert f"BAD objects/{entry.sha256[:2]}/{entry.sha256}: object-sha256: expected" in human.stdout
    assert "FAILED" in human.stdout


def test_cache_verify_repair_removes_bad_entries_audits_them_and_the_next_import_refetches(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    _warm(tmp_path, consumer, config)
    entry = publisher.signed_files()["bakepkg/c.py"]
    obj = consumer.paths.cache_dir / "objects" / entry.sha256[:2] / entry.sha256
    _flip(obj)
    repaired = _verify(tmp_path, consumer, config, "--repair", expect=0)
    assert [p["repaired"] for p in repaired["problems"]] == [True]
    assert not obj.exists()
    records = [r for r in consumer.audit() if r["event"] == "cache-repair"]
    assert len(records) == 1 and records[0]["code"] == "object-sha256"
    assert _verify(tmp_path, consumer, config, expect=0)["problems"] == []
    assert _verify(tmp_path, consumer, config, "--complete", expect=1)["missing"] == {
        publisher.url: 1
    }
    _warm(tmp_path, consumer, config)
    assert obj.read_bytes() == (publisher.out / "bakepkg/c.py").read_bytes()


def test_cache_verify_reports_a_cached_manifest_that_no_longer_verifies(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    _warm(tmp_path, consumer, config)
    [meta] = (consumer.paths.cache_dir / "metadata").iterdir()
    envelope = meta / "secure-import-manifest.json"
    doc = json.loads(envelope.read_bytes())
    signed = base64.b64decode(doc["payload"])
    payload = signed.replace(b'"version": 1', b'"version": 9').replace(
        b'"version":1', b'"version":9'
    )
    assert payload != signed
    doc["payload"] = base64.b64encode(payload).decode()
    envelope.write_text(json.dumps(doc))  # a signed manifest edited: version 1 -> 9
    report = _verify(tmp_path, consumer, config, expect=1)
    [problem] = report["problems"]
    assert problem["entry"] == f"metadata/{meta.name}/secure-import-manifest.json"
    assert problem["check"] == "threshold-not-met"
    assert publisher.url in problem["message"]


def test_cache_verify_of_a_materialised_tree(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher, materialise="true")
    report = _warm(tmp_path, consumer, config)
    assert {p["name"] for p in report["repositories"][0]["packages"] if p["materialised"]} == {
        "bakepkg",
        "bakesingle",
    }
    assert _verify(tmp_path, consumer, config, expect=0)["good"]["materialised trees"] == 2
    [words] = (consumer.paths.cache_dir / "materialised").rglob("words.txt")
    words.parent.chmod(0o700)
    words.chmod(0o600)
    words.write_text("alpha bet4\n")  # same length
    words.chmod(0o400)
    words.parent.chmod(0o500)
    problems = _verify(tmp_path, consumer, config, expect=1)["problems"]
    assert problems[0]["check"] == "materialised" and "words.txt: sha256" in problems[0]["got"]


# --- read-only caches ---------------------------------------------------------------------


def test_an_explicitly_read_only_cache_serves_frozen_offline_imports_and_writes_nothing(
    publisher: Publisher,
    consumer: Consumer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SECURE_IMPORT_CACHE_READONLY=1`` (as root, who could write anyway):
    not one file of the cache is created, changed or deleted, the audit
    witness included."""
    _publish(publisher)
    _warm(tmp_path, consumer, _config(tmp_path, publisher))
    before = _tree(consumer.paths.cache_dir)
    monkeypatch.setenv("SECURE_IMPORT_CACHE_READONLY", "1")
    paths = Paths(consumer.paths.cache_dir, consumer.paths.state_dir, consumer.paths.log_dir)
    assert paths.cache_readonly and paths.witness is None
    consumer.paths = paths
    attempts = install_socket_guard(monkeypatch)
    consumer.new_process(offline=True, modules=["bakepkg", "bakesingle"])
    assert _import_all() == ("abc", "single", "alpha beta\n")
    assert attempts == []
    assert _tree(consumer.paths.cache_dir) == before


def test_a_read_only_cache_without_the_files_still_imports_online_and_audits_a_note(
    publisher: Publisher, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing cached, nothing written: the verified bytes are used from
    memory, and the audit log says the cache was not written."""
    _publish(publisher)
    consumer.paths.cache_dir.mkdir(mode=0o700)
    monkeypatch.setenv("SECURE_IMPORT_CACHE_READONLY", "1")
    consumer.paths = Paths(
        consumer.paths.cache_dir, consumer.paths.state_dir, consumer.paths.log_dir
    )
    consumer.new_process(modules=["bakepkg", "bakesingle"])
    assert _import_all() == ("abc", "single", "alpha beta\n")
    assert list(consumer.paths.cache_dir.iterdir()) == []
    notes = [r for r in consumer.audit() if r["event"] == "cache-readonly"]
    assert len(notes) == 1 and notes[0]["outcome"] == "skipped"
    assert "read-only by configuration" in notes[0]["message"]


_IMPORT_AS_NOBODY = """
import json, sys
import secure_import
from secure_import.store.paths import Paths
cache, state, log, url, key, ca, offline, mods = sys.argv[1:9]
secure_import.add_repo(
    url, keys=[key], ca_bundle=ca, modules=mods.split(","), offline=offline == "1",
    paths=Paths.default(cache_dir=cache, state_dir=state, log_dir=log), children=False,
)
import bakepkg, bakesingle
out = {"value": bakepkg.A + bakepkg.B + bakesingle.S}
if "bakeextra" in mods:
    import bakeextra
    out["extra"] = bakeextra.E
print(json.dumps(out))
"""


def test_a_read_only_cache_directory_works_for_an_unprivileged_user(
    publisher: Publisher, consumer: Consumer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The image case for real: the cache and state trees are chmod a-w and
    the process runs as nobody (root ignores permissions), with no read-only
    flag.  An
    offline import from the warm cache works and writes nothing; an online
    import of a package the image lacks is verified, used from memory and
    not cached (an audited ``cache-readonly`` note), and is no failure."""
    _publish(publisher)
    publisher.write("bakeextra.py", "E = 'extra'\n")
    publisher.publish()
    base = Path(tempfile.mkdtemp(prefix="secure-import-ro-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    os.chmod(base, 0o755)
    home = base / "nobody"
    home.mkdir()
    paths = Paths(cache_dir=home / "cache", state_dir=home / "state", log_dir=home / "log")
    consumer.paths = paths
    _warm(tmp_path, consumer, _config(tmp_path, publisher))  # bakepkg and bakesingle only
    key = shutil.copy(publisher.pub_path, base / "publisher.pub")
    ca = shutil.copy(publisher.rig.ca_pem_path, base / "ca.pem")
    for path in [home, *home.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    # The image's layers: cache and trust state read-only; only the log is writable.
    for base_dir in (paths.cache_dir, paths.state_dir):
        for path in [base_dir, *base_dir.rglob("*")]:
            os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)
    before = _tree(paths.cache_dir)
    state_before = _tree(paths.state_dir)
    python, env = _as_nobody()

    def run(offline: bool, mods: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *python,
                "-c",
                _IMPORT_AS_NOBODY,
                str(paths.cache_dir),
                str(paths.state_dir),
                str(paths.log_dir),
                publisher.url,
                str(key),
                str(ca),
                "1" if offline else "0",
                mods,
            ],
            user=NOBODY,
            group=NOBODY,
            capture_output=True,
            text=True,
            env={**env, "HOME": str(home), "SECURE_IMPORT_NO_PROJECT": "1"},
            timeout=120,
        )

    offline = run(True, "bakepkg,bakesingle")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout) == {"value": "abcsingle"}
    assert _tree(paths.cache_dir) == before
    online = run(False, "bakepkg,bakesingle,bakeextra")
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout) == {"value": "abcsingle", "extra": "extra"}
    assert _tree(paths.cache_dir) == before
    assert _tree(paths.state_dir) == state_before
    # The health check of such an image, as the same user: passes, writes nothing.
    config = base / "image.toml"
    config.write_text(
        "[repositories.bake]\n"
        f'url = "{publisher.url}"\n'
        f'keys = ["{key}"]\n'
        'modules = ["bakepkg", "bakesingle"]\n'
        f'ca_bundle = "{ca}"\n'
    )
    health = subprocess.run(
        [
            *python,
            "-m",
            "secure_import",
            "--json",
            "cache",
            "verify",
            "--complete",
            "--config",
            str(config),
        ],
        user=NOBODY,
        group=NOBODY,
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home), "SECURE_IMPORT_NO_PROJECT": "1", **_env(paths)},
        timeout=120,
    )
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["good"]["objects"] >= 6
    assert _tree(paths.cache_dir) == before and _tree(paths.state_dir) == state_before
    records = [json.loads(line) for line in paths.audit_log.read_text().splitlines()]
    notes = [r for r in records if r["event"] == "cache-readonly"]
    assert len(notes) == 1 and "EACCES" in notes[0]["message"]
    assert any(r["event"] == "load" and r["module"] == "bakeextra" for r in records)
    forget_remote_modules()


# --- cache list and cache clear --repo ---------------------------------------------------


@pytest.fixture
def two(publisher: Publisher, consumer: Consumer, tmp_path: Path, rig: object) -> Publisher:
    """Two repositories used by one consumer; both ship an identical file
    (one object, listed by both manifests)."""
    other = Publisher(tmp_path, publisher.rig, name="other")
    _publish(publisher)
    other.write("otherpkg/__init__.py", "from .x import X\n")
    other.write("otherpkg/x.py", "X = 'x'\n")
    other.write("otherpkg/shared.txt", PACKAGE["bakepkg/data/words.txt"])
    other.publish()
    consumer.add(modules=["bakepkg", "bakesingle"])
    consumer.add(
        url=other.url, keys=[other.pub_path], modules=["otherpkg"], ca_bundle=other.rig.ca_pem_path
    )
    assert _import_all()[0] == "abc"
    assert importlib.import_module("otherpkg").X == "x"
    yield other  # type: ignore[misc]
    other.close()


def _both_config(tmp: Path, publisher: Publisher, other: Publisher) -> Path:
    path = _config(tmp, publisher, name="both.toml")
    path.write_text(
        path.read_text() + "[repositories.other]\n"
        f'url = "{other.url}"\n'
        f'keys = ["{other.pub_path}"]\n'
        'modules = ["otherpkg"]\n'
        f'ca_bundle = "{other.rig.ca_pem_path}"\n'
    )
    return path


def test_cache_list_shows_repository_package_version_size_and_last_use(
    publisher: Publisher, two: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    config = _both_config(tmp_path, publisher, two)
    rows = run_json(tmp_path, "cache", "list", "--config", config, **_env(consumer.paths))
    by_package = {r["package"]: r for r in rows}
    assert set(by_package) == {"bakepkg", "bakesingle", "otherpkg"}
    bake = by_package["bakepkg"]
    assert bake["repository"] == publisher.url and bake["manifest_version"] == 1
    assert bake["manifest"] == "verified" and bake["files"] == 5
    files = publisher.signed_files()
    assert bake["size"] == sum(e.length for p, e in files.items() if p.startswith("bakepkg/"))
    loads = [
        r["time"]
        for r in consumer.audit()
        if r["event"] == "load" and r["module"].partition(".")[0] == "bakepkg"
    ]  # the package and its submodules
    assert bake["last_use"] == max(loads)
    assert by_package["otherpkg"]["repository"] == two.url
    human = run_cli(tmp_path, "cache", "list", "--config", config, **_env(consumer.paths))
    header = human.stdout.splitlines()[1].split()
    assert header == [
        "REPOSITORY",
        "PACKAGE",
        "VERSION",
        "MANIFEST",
        "FILES",
        "SIZE",
        "LAST",
        "USE",
    ]
    # Not configured: the URL comes from the audit log, the manifest is only read.
    bare = run_json(tmp_path, "cache", "list", "--no-project", **_env(consumer.paths))
    assert {(r["repository"], r["manifest"]) for r in bare} == {
        (publisher.url, "unverified"),
        (two.url, "unverified"),
    }


def test_cache_clear_repo_removes_one_repository_and_leaves_the_other_intact(
    publisher: Publisher,
    two: Publisher,
    consumer: Consumer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _both_config(tmp_path, publisher, two)
    cache = consumer.paths.cache_dir
    other_files = two.signed_files()
    shared = other_files["otherpkg/shared.txt"].sha256
    assert shared == publisher.signed_files()["bakepkg/data/words.txt"].sha256
    before = _tree(cache)
    report = run_json(
        tmp_path,
        "cache",
        "clear",
        "--repo",
        publisher.url,
        "--config",
        config,
        **_env(consumer.paths),
    )
    assert report["repository"] == publisher.url
    assert report["removed"]["objects"] == 5 and report["shared_objects_kept"] == 1
    assert report["removed"]["manifests"] == 1 and report["removed"]["memos"] == 1
    assert report["removed"]["bytecode seals"] >= 5
    after = _tree(cache)
    # Everything left is exactly as it was, and everything of the other
    # repository is left: its objects, metadata, memo and seals.
    changed = [k for k, v in after.items() if v[1] is not None and before.get(k) != v]
    assert (
        changed == []
    )  # files: none new, none altered (folders lose entries, so their mtime moves)
    objects = consumer.cached_objects()
    assert {e.sha256 for e in other_files.values()} <= set(objects)
    assert shared in objects
    assert not any(
        e.sha256 in objects
        for p, e in publisher.signed_files().items()
        if p != "bakepkg/data/words.txt"
    )
    rows = run_json(tmp_path, "cache", "list", "--config", config, **_env(consumer.paths))
    assert {r["repository"] for r in rows} == {two.url}
    # The other repository still imports offline, with no socket; the cleared one cannot.
    attempts = install_socket_guard(monkeypatch)
    consumer.new_process(
        url=two.url,
        keys=[two.pub_path],
        modules=["otherpkg"],
        ca_bundle=two.rig.ca_pem_path,
        offline=True,
    )
    assert importlib.import_module("otherpkg").X == "x" and attempts == []
    consumer.new_process(offline=True, modules=["bakepkg"])
    with pytest.raises(ImportError):
        importlib.import_module("bakepkg")


def test_h3_cache_clear_repo_never_follows_a_link_out_of_the_cache(
    publisher: Publisher, two: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    cache = consumer.paths.cache_dir
    outside = tmp_path / "outside"
    shutil.move(str(cache / "verified"), outside)
    (cache / "verified").symlink_to(outside)
    before = _tree(outside)
    report = run_json(
        tmp_path,
        "cache",
        "clear",
        "--repo",
        publisher.url,
        "--no-project",
        **_env(consumer.paths),
    )
    assert _tree(outside) == before
    assert any("not followed" in k for k in report["kept"])


def test_cache_clear_repo_of_an_unknown_url_deletes_nothing_and_names_the_cached_ones(
    publisher: Publisher, two: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    before = _tree(consumer.paths.cache_dir)
    ran = run_cli(
        tmp_path,
        "cache",
        "clear",
        "--repo",
        "https://nowhere.invalid/",
        "--no-project",
        **_env(consumer.paths),
    )
    assert ran.returncode == 1
    assert "holds no repository at https://nowhere.invalid/" in ran.stderr
    assert _tree(consumer.paths.cache_dir) == before


def test_cache_warm_says_which_files_it_fetched_and_refuses_a_read_only_cache(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    _publish(publisher)
    config = _config(tmp_path, publisher)
    ran = run_cli(tmp_path, "cache", "warm", "-v", "--config", config, **_env(consumer.paths))
    assert ran.returncode == 0, ran.stderr
    fetched = sorted(
        line.removeprefix("fetched and verified ")
        for line in ran.stderr.splitlines()
        if line.startswith("fetched and verified ")
    )
    assert fetched == sorted(publisher.url + rel for rel in PACKAGE)
    assert "bakepkg" in ran.stdout and "BYTES" in ran.stdout and "FETCHED" in ran.stdout
    # Warming a cache declared read-only would verify and keep nothing: refused.
    fresh = Paths(tmp_path / "ro-cache", tmp_path / "ro-state", tmp_path / "ro-log")
    refused = run_cli(
        tmp_path,
        "cache",
        "warm",
        "--config",
        config,
        **_env(fresh),
        SECURE_IMPORT_CACHE_READONLY="1",
    )
    assert refused.returncode == 2 and "read-only" in refused.stderr
    assert not fresh.cache_dir.exists()


def test_cache_readonly_in_an_explicit_configuration_file_reaches_the_repositories(
    publisher: Publisher, consumer: Consumer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secure_import

    _publish(publisher)
    _warm(tmp_path, consumer, _config(tmp_path, publisher))
    before = _tree(consumer.paths.cache_dir)
    config = tmp_path / "image.toml"
    config.write_text(
        f'cache_dir = "{consumer.paths.cache_dir}"\n'
        f'state_dir = "{consumer.paths.state_dir}"\n'
        f'log_dir = "{consumer.paths.log_dir}"\n'
        "cache_readonly = true\n" + _config(tmp_path, publisher).read_text()
    )
    monkeypatch.setenv("SECURE_IMPORT_NO_PROJECT", "1")
    for kind in ("CACHE", "STATE", "LOG"):
        monkeypatch.delenv(f"SECURE_IMPORT_{kind}_DIR")
    shown = run_json(tmp_path, "config", "--config", config)
    assert shown["cache_readonly"] is True
    assert shown["origins"]["cache_readonly"] == str(config)
    forget_remote_modules()
    [repo] = secure_import.configure(config)
    assert repo.cache.readonly and repo.paths.witness is None
    assert _import_all() == ("abc", "single", "alpha beta\n")
    assert _tree(consumer.paths.cache_dir) == before
