"""Shared pieces of the whole-process benchmarks (``alternatives.py``,
``bigpkg.py``, ``scaling.py``, ``servers.py``).

What a user pays is the whole process, so these scripts time whole processes
from the parent (``time.perf_counter`` around ``subprocess.run``) and let the
child report only what the parent cannot see: its own peak resident set
(``VmHWM``; ``ru_maxrss`` of a child would carry the parent's high-water mark
across fork+exec) and, for information, the import's own time.

The child programs are small ``python -I -c`` strings (:func:`si_program`,
:func:`plain_program`) rather than ``child.py``: anything the child imports for
its own bookkeeping (json, pathlib, tracemalloc) would be charged to the row.
Each child prints one line, ``BENCH <import seconds> <VmHWM KiB>``, at exit.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent

#: Appended to every child program: its peak RSS, read without importing anything.
_TAIL = (
    "\n_hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]"
    "\nprint('BENCH', _t1 - _t0, _hwm[0].split()[1] if _hwm else 0, flush=True)\n"
)


@dataclass
class Run:
    """One fresh process: wall time seen by the parent, and what it reported."""

    wall: float
    cpu: float = 0.0
    imported: float = 0.0
    hwm_kib: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: no pip/uv configuration of this machine
    (package mirrors, find-links, constraints) and no secure_import variables,
    so a row depends on the loopback server and its arguments only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "SECURE_IMPORT_", "PYTHON"))
        and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )
    env.update(extra or {})
    return env


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> Run:
    """Run ``cmd`` to completion: its wall time, its CPU time (user + system,
    the process and the children it waited for, from ``wait4``: the steadier
    figure on a loaded machine), plus the ``BENCH`` line if any."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            env=dict(env) if env is not None else clean_env(),
            cwd=cwd,
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(
            f"failed ({proc.returncode}): {' '.join(cmd)[:300]}\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    out = Run(wall, cpu=usage.ru_utime + usage.ru_stime)
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            _, imported, hwm, *rest = line.split()
            out.imported, out.hwm_kib = float(imported), int(hwm)
            for item in rest:
                key, _, value = item.partition("=")
                out.extra[key] = float(value)
    return out


def plain_program(imports: Sequence[str], check: str = "", path: str | None = None) -> str:
    """A child that imports ``imports`` the ordinary way (installed or on ``path``)."""
    lines = ["import time as _time"]
    if path is not None:
        lines.append(f"import sys as _sys; _sys.path.insert(0, {path!r})")
    lines.append("_t0 = _time.perf_counter()")
    lines += [f"import {name}" for name in imports]
    if check:
        lines.append(check)
    lines.append("_t1 = _time.perf_counter()")
    return "\n".join(lines) + _TAIL


@dataclass(frozen=True)
class SiRepo:
    """One repository a secure_import child adds."""

    url: str
    pubkey: str
    ca: str
    modules: tuple[str, ...] | None = None
    trust_dependencies: bool = False


def si_env(dirs: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: cache, state and log under ``dirs``, set the way
    a user or a service would (``SECURE_IMPORT_*_DIR``)."""
    env = {
        f"SECURE_IMPORT_{kind}_DIR": str(dirs / kind.lower()) for kind in ("CACHE", "STATE", "LOG")
    }
    env.update(extra or {})
    return clean_env(env)


def si_program(
    repos: Sequence[SiRepo],
    imports: Sequence[str],
    *,
    check: str = "",
    offline: bool = False,
    prelude: str = "",
) -> str:
    """A child that adds ``repos`` and imports (run it with :func:`si_env`).

    The import time reported excludes ``import secure_import`` and ``add_repo``;
    the parent's wall time includes everything.  ``prelude`` runs first (the
    HTTP/2 measurement swaps httpx's client class there).
    """
    lines = [
        "import time as _time",
        prelude,
        f"import sys as _sys; _sys.path.insert(0, {str(PROJECT)!r})",
        "import secure_import as _si",
    ]
    for repo in repos:
        extra = ""
        if repo.modules is not None:
            extra += f", modules={list(repo.modules)!r}"
        if repo.trust_dependencies:
            extra += ", trust_dependencies=True"
        lines.append(
            f"_si.add_repo({repo.url!r}, keys=[{repo.pubkey!r}], ca_bundle={repo.ca!r}, "
            f"offline={offline!r}{extra})"
        )
    lines.append("_t0 = _time.perf_counter()")
    lines += [f"import {name}" for name in imports]
    if check:
        lines.append(check)
    lines.append("_t1 = _time.perf_counter()")
    # The row measures the finder, not a copy installed somewhere on sys.path.
    lines += [
        f"assert {name}.__spec__.origin.startswith('https://'), {name}.__spec__.origin"
        for name in imports
    ]
    return "\n".join(lines) + _TAIL


def fresh_dir(parent: Path, label: str) -> Path:
    """A new private directory under ``parent`` (cache/state/log of one consumer)."""
    parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1_000_000):
        path = parent / f"{label}-{i}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise RuntimeError("no free directory name")


def tree_size(root: Path) -> tuple[int, int]:
    """Bytes and regular files under ``root`` (the cache a consumer keeps)."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_size
            files += 1
    return total, files


# -- the consumer's environment ---------------------------------------------------


def _requirement_name(spec: str) -> str | None:
    """The distribution a requirement names, or None for an extra's."""
    if "extra ==" in spec.replace('"', "'").replace("extra==", "extra =="):
        return None
    name = spec.split(";", 1)[0].strip()
    for stop in "<>=!~[( ":
        name = name.split(stop, 1)[0]
    return name.strip() or None


def _closure(root: str) -> list[importlib.metadata.Distribution]:
    """``root`` and every distribution it needs (extras left out), as installed here."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker-excluded requirement (other platform or Python)
        seen[key] = dist
        todo += [n for n in map(_requirement_name, dist.requires or []) if n]
    return list(seen.values())


def consumer_python(work: Path) -> Path:
    """The interpreter of a clean virtual environment holding secure_import's
    runtime dependencies only, as ``pip install secure-import`` would leave it.

    The benchmark's own environment holds the test tools, some of which pull
    in sympy (moto -> cfn-lint): a child there would import the installed
    sympy ahead of the finder.  The dependencies are copied from this
    environment (same versions, ``__pycache__`` included, offline); the
    project itself comes from the working tree (``si_program`` puts it first
    on ``sys.path``), and its start-up hook for child interpreters is copied
    in as a wheel install would place it.
    """
    venv = work / "venv-consumer"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env()
    )
    [site] = (venv / "lib").glob("python*/site-packages")
    for dist in _closure("secure-import"):
        if dist.metadata["Name"].lower().replace("_", "-") == "secure-import":
            continue
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = base / top
            if source.is_dir():
                shutil.copytree(source, site / top, symlinks=True, dirs_exist_ok=True)
            elif source.is_file() and source.suffix != ".pth":
                shutil.copy2(source, site / top)
    hook = PROJECT / "startup" / "secure_import-children.pth"
    if hook.exists():
        shutil.copy2(hook, site / hook.name)
    return python


# -- report helpers -------------------------------------------------------------


def med(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ms(values: Sequence[float]) -> str:
    """Median (min-max) in milliseconds."""
    m = statistics.median(values) * 1000
    if len(values) == 1:
        return f"{m:.0f}"
    return f"{m:.0f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


def mib(kib_values: Sequence[float]) -> str:
    return f"{statistics.median(kib_values) / 1024:.1f}"


def machine_note(runs: int) -> str:
    """Where and under what load the figures were taken."""
    load = os.getloadavg()
    kind = "virtual environment" if sys.prefix != sys.base_prefix else "system interpreter"
    count = len({d.metadata["Name"] for d in importlib.metadata.distributions()})
    return (
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()} ({kind}, {count} distributions); load average at the "
        f"end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min): other sessions "
        f"share this machine, so absolute times are noisy and the paired ratios matter "
        f"more; {runs} fresh processes per row, variants interleaved run by run "
        "(paired), medians (min-max)."
    )


def write_report(path: Path | None, text: str) -> None:
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
