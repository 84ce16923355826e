"""What a cold import of *part* of a large package costs, per bundle mode.

For each ``secure-import sign --bundles`` mode the source tree is signed into
a temporary site, served by :class:`bench.server.BenchServer` on loopback,
and a fresh process imports the given statement three times against one
cache: cold, warm (freshness check) and warm offline.  Each row reports the
requests and bytes the server sent, the process's peak resident memory
(``VmHWM``), wall time, and the cache's size and file count afterwards.

    python bench/partial.py --synthetic 40          # generated package: 40 subpackages
    python bench/partial.py --src /tmp/tree --import "import sympy" \\
        --python /tmp/venv/bin/python --local-import numpy ...   # a real tree (never committed)

``--synthetic N`` writes ``bigpkg`` (N subpackages of 25 modules, ~4 KB
each) and imports ``bigpkg.sub000`` only.  With a downloaded wheel, unpack it
into a directory and pass it as ``--src`` (with the ``--local-import`` names
its import scan asks for); nothing fetched belongs in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from bench.server import BenchServer  # noqa: E402

_CHILD = r"""
import json, os, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
started = time.perf_counter()
import secure_import
paths = secure_import.Paths(
    cache_dir=Path(cfg["cache"]), state_dir=Path(cfg["state"]), log_dir=Path(cfg["log"])
)
secure_import.add_repo(
    cfg["url"], keys=[cfg["key"]], ca_bundle=cfg["ca"], offline=cfg["offline"], paths=paths
)
exec(cfg["statement"], {})
wall = time.perf_counter() - started
hwm = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
print(json.dumps({"wall_s": wall, "maxrss_kb": hwm}))
"""


def _synthetic(root: Path, subpackages: int) -> str:
    def filler(seed: int) -> str:
        # Distinct constants per module, so modules do not compress into each other.
        return "\n".join(
            f"def f{i}(x):\n    return x * {(seed * 7919 + i * 104729) % 1000003} + {i}\n"
            for i in range(120)
        )

    top = root / "bigpkg"
    top.mkdir(parents=True)
    (top / "__init__.py").write_text('"""A generated large package."""\n')
    for s in range(subpackages):
        sub = top / f"sub{s:03d}"
        sub.mkdir()
        names = [f"m{m:02d}" for m in range(24)]
        (sub / "__init__.py").write_text(f"from . import {', '.join(names)}\n")
        for name in names:
            body = filler(s * 100 + int(name[1:]))
            (sub / f"{name}.py").write_text(f'"""Module {name} of sub{s:03d}."""\n{body}')
    return "import bigpkg.sub000"


def _sign(src: Path, out: Path, key: Path, mode: str, extra: list[str]) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "secure_import", "sign", str(src), "--key", str(key)),
            *("--out", str(out), "--bundles", mode, *extra),
        ],
        check=True,
        capture_output=True,
    )


def _tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def measure(
    src: Path, statement: str, modes: list[str], extra: list[str], python: str = sys.executable
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="si-partial-") as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(
            [sys.executable, "-m", "secure_import", "keygen", "bench", "--dir", str(tmp / "keys")],
            check=True,
            capture_output=True,
        )
        key = tmp / "keys" / "bench.key"
        for mode in modes:
            site = tmp / f"site-{mode}"
            _sign(src, site, key, mode, extra)
            server = BenchServer(site, tmp)
            cache = tmp / f"cache-{mode}"
            try:
                for phase, offline in (("cold", False), ("warm", False), ("warm-offline", True)):
                    server.reset()
                    cfg = {
                        "url": server.url,
                        "key": str(tmp / "keys" / "bench.pub"),
                        "ca": str(server.ca_path),
                        "offline": offline,
                        "cache": str(cache),
                        "state": str(tmp / f"state-{mode}"),
                        "log": str(tmp / f"log-{mode}"),
                        "statement": statement,
                    }
                    proc = subprocess.run(
                        [python, "-I", "-c", _CHILD, json.dumps(cfg)],
                        capture_output=True,
                        text=True,
                        env={**os.environ, "PYTHONPATH": str(PROJECT)},
                    )
                    if proc.returncode != 0:
                        raise SystemExit(f"{mode} {phase} failed:\n{proc.stderr[-3000:]}")
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                    tally = server.tally()
                    size, count = _tree_size(cache)
                    rows.append(
                        {
                            "mode": mode,
                            "phase": phase,
                            "requests": tally.requests,
                            "wire_bytes": tally.body_bytes,
                            "peak_mib": round(result["maxrss_kb"] / 1024, 1),
                            "wall_ms": round(result["wall_s"] * 1000),
                            "cache_mb": round(size / 1e6, 1),
                            "cache_files": count,
                        }
                    )
            finally:
                server.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--src", type=Path, help="source tree to sign (a package directory's parent)"
    )
    parser.add_argument("--import", dest="statement", default=None, help="the statement to time")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="generate bigpkg")
    parser.add_argument("--modes", default="legacy,whole,split")
    parser.add_argument("--local-import", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the importing processes: one where the package is NOT installed "
        "(a venv with only secure-import), or the local copy would be imported instead",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    extra = [f"--local-import={name}" for name in args.local_import]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="si-partial-src-") as gen:
        if args.synthetic:
            src = Path(gen)
            statement = args.statement or _synthetic(src, args.synthetic)
        elif args.src is not None and args.statement:
            src, statement = args.src, args.statement
        else:
            parser.error("give --synthetic N, or --src DIR and --import STATEMENT")
        rows = measure(src, statement, args.modes.split(","), extra, args.python)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"# {statement!r}  ({time.perf_counter() - started:.0f} s)")
    columns = ["mode", "phase", "requests", "bytes on the wire", "peak MiB", "wall ms"]
    print("| " + " | ".join([*columns, "cache MB", "cache files"]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['phase']} | {r['requests']} | {r['wire_bytes']:,} | "
            f"{r['peak_mib']} | {r['wall_ms']} | {r['cache_mb']} | {r['cache_files']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
