"""Running ``secure-import`` the way users do: a real subprocess.

The child gets the repository on ``PYTHONPATH`` (CI also installs it with
``pip -e``), the per-test ``SECURE_IMPORT_*_DIR`` variables the autouse
fixture set, empty user/site configuration directories and ``NO_COLOR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def child_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-user-config")
    env["XDG_CONFIG_DIRS"] = str(tmp / "xdg-site-config")
    env["NO_COLOR"] = "1"
    env.pop("SECURE_IMPORT_CONFIG", None)
    env.update(extra)
    return env


def run_cli(
    tmp: Path,
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    timeout: float = 60,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``python -m secure_import ARGS`` in ``cwd`` (default: ``tmp``)."""
    return subprocess.run(
        [sys.executable, "-m", "secure_import", *map(str, args)],
        cwd=cwd or tmp,
        env=child_env(tmp, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_json(tmp: Path, *args: str | os.PathLike[str], expect: int = 0, **kw: Any) -> Any:
    """Run with ``--json``; check the exit code; return the parsed stdout."""
    result = run_cli(tmp, *args, "--json", **kw) if "run" not in args else run_cli(tmp, *args, **kw)
    assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)
