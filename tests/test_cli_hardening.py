"""Issue 14 at the command line: ``--json`` answers usage errors in JSON,
human output escapes control characters (THREATS H8), ``audit verify``
reports a restarted chain (H7), ``cache clear`` keeps what is not ours (H3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from secure_import.store.audit import AuditLog
from secure_import.store.paths import Paths

from .clirunner import run_cli

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\nfake line\x9b1m"


def _env_paths() -> Paths:
    return Paths(
        cache_dir=Path(os.environ["SECURE_IMPORT_CACHE_DIR"]),
        state_dir=Path(os.environ["SECURE_IMPORT_STATE_DIR"]),
        log_dir=Path(os.environ["SECURE_IMPORT_LOG_DIR"]),
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "cache", "bogus"],
        ["cache", "--json", "--no-such-option", "list"],
        ["--json", "no-such-command"],
        ["audit", "show", "--limit", "many", "--json"],
    ],
)
def test_usage_errors_are_answered_in_json_with_json(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["error"]["code"] == "usage"
    assert answer["error"]["message"]
    assert "usage:" in result.stderr  # the human hint stays on stderr


def test_usage_errors_without_json_stay_text(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "cache", "bogus")
    assert result.returncode == 2 and result.stdout == "" and "invalid choice" in result.stderr


def _plant_hostile_record() -> Paths:
    paths = _env_paths()
    AuditLog(paths.audit_log, witness=paths.audit_witness).append(
        "refuse",
        outcome="refused",
        module=HOSTILE,
        url="https://h/" + HOSTILE,
        code="not-listed",
        message=HOSTILE,
    )
    return paths


def test_h8_audit_show_escapes_control_characters(tmp_path: Path) -> None:
    """A refused module name carrying terminal escapes (retitle, clear the
    screen, recolour, a forged line) is shown escaped, never raw."""
    _plant_hostile_record()
    result = run_cli(tmp_path, "audit", "show")
    assert result.returncode == 0
    for raw in ("\x1b", "\x07", "\r", "\x9b"):
        assert raw not in result.stdout and raw not in result.stderr
    assert "\\x1b]0;pwned\\x07" in result.stdout
    assert "fake line" in result.stdout
    # The forged line stays inside its row: one header, one record.
    body = [line for line in result.stdout.splitlines() if line and "audit log:" not in line]
    assert len([line for line in body if "refuse" in line]) == 1
    assert not any(line.startswith("fake line") for line in body)
    # The JSON output keeps the exact value (JSON escapes it itself).
    shown = json.loads(run_cli(tmp_path, "audit", "show", "--json").stdout)
    assert shown[0]["module"] == HOSTILE


def test_h8_error_messages_on_stderr_are_escaped(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "verify", str(tmp_path / HOSTILE.replace("/", "")), "--key", "x")
    assert result.returncode != 0
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


def test_h7_audit_verify_reports_a_restarted_chain(tmp_path: Path) -> None:
    paths = _plant_hostile_record()
    assert json.loads(run_cli(tmp_path, "audit", "verify", "--json").stdout)["restarts"] == []
    paths.log_dir.rename(tmp_path / "moved-away")
    AuditLog(paths.audit_log, witness=paths.audit_witness).append("load", outcome="ok", module="m")
    human = run_cli(tmp_path, "audit", "verify")
    assert "RESTARTED" in human.stdout and "intact:" not in human.stdout
    verdict = json.loads(run_cli(tmp_path, "audit", "verify", "--json").stdout)
    assert verdict["ok"] and len(verdict["restarts"]) == 1


def test_h3_cli_cache_clear_on_a_foreign_directory_keeps_it(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (precious / "objects").symlink_to(tmp_path)
    result = run_cli(tmp_path, "cache", "clear", "--cache-dir", precious)
    assert result.returncode == 0, result.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert (precious / "objects").is_symlink()
    assert "kept" in result.stderr and "not followed" in result.stderr
    linked = tmp_path / "linked"
    linked.symlink_to(precious)
    refused = run_cli(tmp_path, "cache", "clear", "--cache-dir", linked, "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["check"] == "cache-clear"
    assert (precious / "thesis.tex").exists()
