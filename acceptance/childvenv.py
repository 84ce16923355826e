"""The real virtual environment for libraries whose tests start child interpreters.

The ``-S`` runs of the other libraries process no ``.pth`` file, and their
children inherit ``-S``, so secure_import's start-up hook never runs there.
Libraries that start ``sys.executable`` or use multiprocessing therefore run
in a virtual environment made here:

- ``python -m venv --without-pip`` (no system site-packages);
- secure_import installed into it by ``pip install --no-deps`` from the
  project directory: a real, non-editable install, which places the shipped
  ``secure_import-children.pth`` in its site-packages (checked);
- the test tools and secure_import's dependencies symlinked into that
  site-packages, as for the ``-S`` site.

The library under test is never installed: :func:`check_isolation` proves
that no copy is importable in the environment before the repository is
added, and that the run's ``sys.path`` held none of the host's
site-packages directories.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from importlib.metadata import Distribution
from pathlib import Path

PTH = "secure_import-children.pth"


def host_site_dirs() -> list[str]:
    """Site-packages directories of the interpreter running the harness and
    of its base installation: none may appear on a test run's path."""
    found = {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        found.add(site.getusersitepackages())
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    found.add(base["purelib"])
    return sorted(str(Path(p).resolve()) for p in found)


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def build_child_venv(
    where: Path,
    project: Path,
    dists: dict[str, Distribution],
    link: Callable[[Path, dict[str, Distribution]], None],
) -> Path:
    """Make the environment; return its interpreter."""
    if where.exists():
        shutil.rmtree(where)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = _site_packages(python)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            # Compiled as any install is: without .pyc files every child would
            # compile secure_import from source (~0.2 s each on this machine).
            str(project),
        ],
        check=True,
    )
    if not (purelib / PTH).is_file():
        raise SystemExit(f"the installed project did not ship its start-up hook {PTH}")
    installed = purelib / "secure_import"
    if installed.is_symlink() or not (installed / "__init__.py").is_file():
        raise SystemExit(f"secure_import is not a real install in {purelib}")
    link(purelib, {k: v for k, v in dists.items() if k != "secure-import"})
    return python


def check_isolation(python: Path, tops: list[str], env: dict[str, str]) -> list[str]:
    """Problems with the environment as the test run sees it (empty if none):
    a copy of the library importable without the repository, a host
    site-packages directory on the path, or the start-up hook not active."""
    code = (
        "import importlib.util, json, sys\n"
        f"tops = {tops!r}\n"
        "print(json.dumps({'found': {t: str(importlib.util.find_spec(t)) for t in tops\n"
        "    if importlib.util.find_spec(t) is not None}, 'path': sys.path,\n"
        "    'no_site': sys.flags.no_site, 'venv': sys.prefix != sys.base_prefix}))\n"
    )
    probe = {k: v for k, v in env.items() if not k.startswith("SECURE_IMPORT_CHILD")}
    out = subprocess.run(
        [str(python), "-s", "-P", "-c", code], check=True, capture_output=True, text=True, env=probe
    )
    seen = json.loads(out.stdout)
    problems = [
        f"{name} importable without the repository: {spec}" for name, spec in seen["found"].items()
    ]
    host = set(host_site_dirs())
    for entry in seen["path"]:
        if entry and str(Path(entry).resolve()) in host:
            problems.append(f"host site-packages on the path: {entry}")
    if seen["no_site"] or not seen["venv"]:
        problems.append("not a virtual environment with site enabled")
    purelib = _site_packages(python)
    for top in tops:
        if (purelib / top).exists() or (purelib / f"{top}.py").exists():
            problems.append(f"{top} is present in {purelib}")
    return problems
