"""The ``secure-import`` command through its real entry points: ``python -m
secure_import`` in a subprocess, and the installed console script.  Every
command's ``--json`` output is parsed; exit codes are 0 / 1 / 2."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from secure_import import __version__
from secure_import.cli import Out, _colour_wanted
from secure_import.store import logbridge

from .clirunner import child_env, run_cli, run_json
from .conftest import Consumer, Publisher

# --- publisher commands ----------------------------------------------------------


def test_keygen_sign_verify_round_trip_in_json(tmp_path: Path) -> None:
    keys = run_json(tmp_path, "keygen", "alice", "--dir", tmp_path / "keys")
    assert keys["ok"] and len(keys["key_id"]) == 64
    assert Path(keys["public_key"]).is_file()
    src = tmp_path / "src"
    (src / "hello").mkdir(parents=True)
    (src / "hello" / "__init__.py").write_text("GREETING = 'hi'\n")
    signed = run_json(
        tmp_path, "sign", src, "--key", keys["private_key"], "--out", tmp_path / "site"
    )
    assert signed["version"] == 1 and signed["provides"] == ["hello"]
    report = run_json(tmp_path, "verify", tmp_path / "site", "--key", keys["public_key"])
    assert report["ok"] and report["files_checked"] == 1 and report["failures"] == []

    (tmp_path / "site" / "hello" / "__init__.py").write_text("GREETING = 'hx'\n")
    report = run_json(tmp_path, "verify", tmp_path / "site", "--key", keys["public_key"], expect=1)
    assert not report["ok"]
    assert report["failures"][0]["code"] == "hash-mismatch"
    human = run_cli(tmp_path, "verify", tmp_path / "site", "--key", keys["public_key"])
    assert human.returncode == 1 and "FAILED" in human.stdout


def test_verify_over_https(publisher: Publisher, tmp_path: Path) -> None:
    publisher.write("web_pkg.py", "X = 1\n")
    publisher.publish()
    report = run_json(
        tmp_path,
        "verify",
        publisher.url,
        "--key",
        publisher.pub_path,
        "--ca-bundle",
        publisher.rig.ca_pem_path,
    )
    assert report["ok"] and report["version"] == 1


def test_a_failure_in_json_mode_is_a_json_error_on_stdout(tmp_path: Path) -> None:
    data = run_json(tmp_path, "verify", tmp_path, "--key", tmp_path / "missing.pub", expect=1)
    assert data == {"ok": False, "error": data["error"]}
    assert data["error"]["code"] == "key-file"


# --- consumer state: cache and audit ------------------------------------------------


@pytest.fixture
def used(publisher: Publisher, consumer: Consumer, canary: Path) -> Consumer:
    """A consumer that imported one package and was refused a tampered one."""
    publisher.write("good_pkg/__init__.py", "from . import sub\n")
    publisher.write("good_pkg/sub.py", "X = 1\n")
    publisher.write("bad_pkg/__init__.py", "Y = 2\n")
    publisher.publish()
    publisher.tamper("bad_pkg/__init__.py", b"Y = 3\n")
    consumer.add(modules=["good_pkg", "bad_pkg"])
    importlib.import_module("good_pkg")
    with pytest.raises(ImportError):
        importlib.import_module("bad_pkg")
    return consumer


def _dirs(consumer: Consumer) -> list[str]:
    p = consumer.paths
    return [
        "--cache-dir",
        str(p.cache_dir),
        "--state-dir",
        str(p.state_dir),
        "--log-dir",
        str(p.log_dir),
    ]


def test_cache_list_and_clear(used: Consumer, tmp_path: Path) -> None:
    listing = run_json(tmp_path, "cache", "list", "--objects", *_dirs(used))
    assert {e["sha256"] for e in listing} == set(used.cached_objects())
    human = run_cli(tmp_path, "cache", "list", "--objects", *_dirs(used))
    assert human.returncode == 0 and "SHA256" in human.stdout and "files," in human.stdout
    cleared = run_json(tmp_path, "cache", "clear", *_dirs(used))
    assert cleared["removed"] == len(listing) and used.cached_objects() == {}
    assert run_json(tmp_path, "cache", "list", "--objects", *_dirs(used)) == []
    assert run_json(tmp_path, "cache", "list", *_dirs(used)) == []


def test_audit_show_filters(used: Consumer, tmp_path: Path) -> None:
    every = run_json(tmp_path, "audit", "show", *_dirs(used))
    assert len(every) == len(used.audit())
    loads = run_json(tmp_path, "audit", "show", *_dirs(used), "--module", "good_pkg")
    assert {r["module"] for r in loads} == {"good_pkg", "good_pkg.sub"}
    refused = run_json(tmp_path, "audit", "show", *_dirs(used), "--outcome", "refused")
    assert [r["module"] for r in refused] == ["bad_pkg"]
    assert refused[0]["code"] in ("hash-mismatch", "length-mismatch")
    assert run_json(tmp_path, "audit", "show", *_dirs(used), "--until", "2000-01-01") == []
    recent = run_json(tmp_path, "audit", "show", *_dirs(used), "--since", "1h")
    assert len(recent) == len(every)
    assert run_json(tmp_path, "audit", "show", *_dirs(used), "--repo", "no-such-host") == []
    last = run_json(tmp_path, "audit", "show", *_dirs(used), "--limit", "1")
    assert last == every[-1:]
    human = run_cli(tmp_path, "audit", "show", *_dirs(used), "--event", "refuse")
    assert human.returncode == 0 and "bad_pkg" in human.stdout and "good_pkg" not in human.stdout


def test_audit_export_is_the_stored_lines_and_still_verifies(
    used: Consumer, tmp_path: Path
) -> None:
    result = run_cli(tmp_path, "audit", "export", *_dirs(used))
    assert result.returncode == 0
    assert result.stdout == used.paths.audit_log.read_text()
    shipped = tmp_path / "shipped" / "audit.jsonl"
    shipped.parent.mkdir(mode=0o700)
    summary = run_json(tmp_path, "audit", "export", *_dirs(used), "--output", shipped)
    assert summary["exported"] == len(used.audit())
    assert oct(shipped.stat().st_mode & 0o777) == "0o600"
    verdict = run_json(tmp_path, "audit", "verify", "--log-dir", shipped.parent)
    assert verdict["ok"] and verdict["records"] == len(used.audit())
    only = run_cli(tmp_path, "audit", "export", *_dirs(used), "--outcome", "refused")
    lines = [json.loads(line) for line in only.stdout.splitlines()]
    assert [r["outcome"] for r in lines] == ["refused"]


def test_audit_verify_reports_a_broken_chain(used: Consumer, tmp_path: Path) -> None:
    assert run_json(tmp_path, "audit", "verify", *_dirs(used))["ok"]
    log = used.paths.audit_log
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:1] + lines[2:]))
    verdict = run_json(tmp_path, "audit", "verify", *_dirs(used), expect=1)
    assert verdict["broken_at_line"] == 2


# --- configuration commands -----------------------------------------------------------


def _project(tmp_path: Path, publisher: Publisher, extra: str = "") -> Path:
    project = tmp_path / "project"
    (project / "keys").mkdir(parents=True)
    (project / "keys" / "pub.pub").write_bytes(publisher.pub_path.read_bytes())
    (project / "secure-import.toml").write_text(
        "[repositories.pub]\n"
        f'url = "{publisher.url}"\nkeys = ["keys/pub.pub"]\nmodules = ["cfg_pkg"]\n'
        f'ca_bundle = "{publisher.rig.ca_pem_path}"\n{extra}'
    )
    return project


def test_config_check_and_fetch(publisher: Publisher, tmp_path: Path) -> None:
    publisher.write("cfg_pkg/__init__.py", "from . import a\n")
    publisher.write("cfg_pkg/a.py", "A = 1\n")
    publisher.write("cfg_pkg/data.txt", "hello\n")
    publisher.write("other_pkg.py", "O = 1\n")
    publisher.publish()
    project = _project(tmp_path, publisher)

    shown = run_json(tmp_path, "config", cwd=project)
    assert shown["files"] == [str(project / "secure-import.toml")]
    assert shown["repositories"][0]["modules"] == ["cfg_pkg"]
    assert shown["origins"]["cache_dir"] == "$SECURE_IMPORT_CACHE_DIR"

    report = run_json(tmp_path, "check", cwd=project)
    assert report["ok"], report
    checks = {f["check"] for f in report["findings"]}
    assert {"url", "key", "pin", "transport", "manifest", "modules"} <= checks

    fetched = run_json(tmp_path, "fetch", cwd=project)
    assert fetched["repositories"][0]["files"] == 3  # cfg_pkg's three files, not other_pkg
    publisher.close()  # no network from here on
    offline = run_json(tmp_path, "check", "--offline", cwd=project)
    assert offline["ok"], offline
    script = project / "use.py"
    script.write_text("import cfg_pkg, pkgutil\nprint(cfg_pkg.a.A)\n")
    ran = run_cli(tmp_path, "run", "--offline", script, cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "1"


def test_lock_then_frozen_run_accepts_exactly_the_locked_manifest(
    publisher: Publisher, tmp_path: Path
) -> None:
    publisher.write("cfg_pkg/__init__.py", "V = 1\n")
    publisher.publish()
    project = _project(tmp_path, publisher, extra="")
    locked = run_json(tmp_path, "lock", "--output", project / "secure-import.lock", cwd=project)
    assert locked["repositories"][0]["manifest_version"] == 1
    script = project / "use.py"
    script.write_text("import cfg_pkg\nprint(cfg_pkg.V)\n")
    frozen = ["--frozen", "--lock-file", str(project / "secure-import.lock")]
    ran = run_cli(tmp_path, "run", *frozen, script, cwd=project)
    assert ran.returncode == 0 and ran.stdout.strip() == "1", ran.stderr
    publisher.write("cfg_pkg/__init__.py", "V = 2\n")
    publisher.publish()  # a new, validly signed version: not what was locked
    ran = run_cli(tmp_path, "run", *frozen, script, cwd=project)
    assert ran.returncode == 0 and ran.stdout.strip() == "1"  # the locked one, from cache
    run_json(tmp_path, "cache", "clear", cwd=project)
    ran = run_cli(tmp_path, "run", *frozen, script, cwd=project)
    assert ran.returncode == 1 and "lock-mismatch" in ran.stderr
    unsafe = run_cli(
        tmp_path,
        "run",
        "--no-project",
        *frozen,
        "--repo",
        publisher.url,
        "--key",
        publisher.pub_path,
        script,
        cwd=project,
    )
    assert unsafe.returncode == 1 and "frozen mode refuses unsafe settings" in unsafe.stderr


def test_check_says_precisely_what_is_wrong(publisher: Publisher, tmp_path: Path) -> None:
    publisher.write("cfg_pkg/__init__.py", "")
    publisher.publish()
    project = _project(tmp_path, publisher)
    (project / "keys" / "pub.pub").write_text("not a key\n")
    report = run_json(tmp_path, "check", cwd=project, expect=1)
    bad = [f for f in report["findings"] if not f["ok"]]
    assert bad[0]["check"] == "key" and "pub.pub" in bad[0]["detail"]

    (project / "keys" / "pub.pub").write_bytes(publisher.pub_path.read_bytes())
    (project / "secure-import.toml").write_text(
        (project / "secure-import.toml").read_text().replace('"cfg_pkg"', '"cfg_pkg", "nope"')
    )
    report = run_json(tmp_path, "check", cwd=project, expect=1)
    (bad,) = [f for f in report["findings"] if not f["ok"]]
    assert bad["check"] == "modules" and "nope" in bad["detail"]

    (project / "secure-import.toml").write_text("colour = 'blue'\n")
    human = run_cli(tmp_path, "check", cwd=project)
    assert human.returncode == 1
    assert "secure-import.toml: colour: unknown key" in human.stderr


def test_unsafe_setting_warns_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "ops.toml"
    config.write_text("unsafe_clock_slack = 86400\n")
    result = run_cli(tmp_path, "config", "--config", config, "--json")
    assert result.returncode == 0
    assert "warning: secure_import: unsafe setting in effect" in result.stderr
    assert json.loads(result.stdout)["unsafe"]


# --- demo, usage, version, colour ----------------------------------------------------------


def test_demo_json(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "demo", "--json")
    data = json.loads(result.stdout)
    assert any("import refused" in step for step in data["steps"]), data["steps"]
    assert data["ok"] is True and result.returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["nope"],
        ["keygen"],
        ["cache", "list", "--bogus"],
        ["run"],
        ["audit", "show", "--since", "yesterday-ish"],
        ["run", "--key", "k.pub", "script.py"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage:" in result.stderr


def test_version_and_options_after_the_command(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"secure-import {__version__}"
    quiet = run_cli(tmp_path, "cache", "list", "-q")
    assert quiet.returncode == 0 and "files," not in quiet.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _colour_wanted(TTY(), True)
    assert not _colour_wanted(io.StringIO(), True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _colour_wanted(TTY(), True)
    assert Out(colour=False).paint("x", "31") == "x"


def test_installed_console_script(tmp_path: Path) -> None:
    # The script of the environment these tests run in (scripts/check runs
    # them without activating the venv, so it need not be on PATH).
    exe = shutil.which("secure-import", path=sysconfig.get_path("scripts")) or shutil.which(
        "secure-import"
    )
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the package: the secure-import script must be on PATH")
        pytest.skip("the package is not installed (pip install -e .)")
    result = subprocess.run(
        [exe, "keygen", "bob", "--dir", str(tmp_path), "--json"],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["public_key"] == str(tmp_path / "bob.pub")
    assert (
        subprocess.run(
            [exe, "frobnicate"], env=child_env(tmp_path), capture_output=True, timeout=60
        ).returncode
        == 2
    )


# --- the logging bridge -------------------------------------------------------------------


def test_audit_records_reach_stdlib_logging(caplog: pytest.LogCaptureFixture) -> None:
    logbridge.logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=logbridge.LOGGER_NAME):
            logbridge.emit({"event": "load", "outcome": "ok", "module": "m", "url": "https://x/"})
            logbridge.emit({"event": "refuse", "outcome": "refused", "code": "hash-mismatch"})
    finally:
        logbridge.logger.removeHandler(caplog.handler)
    first, second = caplog.records
    assert first.levelno == logging.INFO and first.getMessage() == (
        "load ok module=m url=https://x/"
    )
    assert first.secure_import["module"] == "m"  # type: ignore[attr-defined]
    assert second.levelno == logging.WARNING
    assert second.audit_code == "hash-mismatch"  # type: ignore[attr-defined]


# --- trust roots: rotation through the real entry point ---------------------------------


def test_root_init_and_rotate_then_consumers_follow(
    tmp_path: Path, publisher: Publisher, consumer: Consumer
) -> None:
    from secure_import.store.keyfiles import generate_keypair

    publisher.write("rotmod.py", "V = 1\n")
    publisher.publish()
    result = run_cli(
        tmp_path, "root", "init", str(publisher.out), "--key", str(publisher.key_path), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 1
    consumer.add()
    assert importlib.import_module("rotmod").V == 1
    new_key, _ = generate_keypair("next", tmp_path / "next-keys")
    result = run_cli(
        tmp_path,
        "root",
        "rotate",
        str(publisher.out),
        "--old-key",
        str(publisher.key_path),
        "--new-key",
        str(new_key),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 2
    publisher.write("rotmod.py", "V = 2\n")
    result = run_cli(
        tmp_path, "sign", str(publisher.src), "--key", str(new_key), "--out", str(publisher.out)
    )
    assert result.returncode == 0, result.stderr
    consumer.new_process()
    assert importlib.import_module("rotmod").V == 2
    assert [r["event"] for r in consumer.audit()].count("rotate") == 1


def test_root_rotate_without_keys_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "root", "rotate", str(tmp_path))
    assert result.returncode == 2
