"""Benchmark: secure_import against plain imports and httpimport, in fresh processes.

Usage (from the repository root)::

    python bench/run.py                 # full run, writes bench/results/latest.md
    python bench/run.py --quick         # CI smoke: N in {1, 10}, 1 run, no delay,
                                        # no httpimport; asserts correctness only

What it does:

1. generates packages of N modules (~100 lines each, see ``genpkg.py``), signs
   them into a repository with a fresh key, and serves it on 127.0.0.1 over
   HTTPS (trustme CA) with an injected per-request delay and per-new-connection
   delay (``server.py``);
2. for each N and each variant, starts a fresh interpreter (``child.py``)
   several times, interleaving variants run by run, and records the import
   time, requests, new TLS connections, 404s, body bytes and memory;
3. prints one markdown table (medians with min-max, ratios to the local
   ``.pyc`` import, cold vs httpimport), checks the issue's targets, and
   writes it all, with the exact command, to ``--out``.

Variants: ``local`` (package on sys.path, ``.pyc`` present: the floor),
``local-nopyc`` (``-B``, no ``__pycache__``), ``httpimport`` (1.4.1, in its
own venv ``bench/.venv-httpimport``, created on first use with pip; never a
project dependency), ``si-cold`` (empty cache, state and log), ``si-warm``
(cache filled; the manifest is re-checked with one conditional request) and
``si-offline`` (cache filled, ``offline=True``: no network).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(HERE))

from genpkg import expected_check, generate, package_name  # noqa: E402
from server import BenchServer, Tally  # noqa: E402

from secure_import.publish.sign import publish  # noqa: E402
from secure_import.store.keyfiles import generate_keypair, load_private_key_file  # noqa: E402

CHILD = HERE / "child.py"
HTTPIMPORT_VENV = HERE / ".venv-httpimport"
HTTPIMPORT_VERSION = "1.4.1"
#: Absent names per round of the in-process finder-cost measurement.
PAIRED_MISSES = 100
VARIANTS = ("local", "local-nopyc", "httpimport", "si-cold", "si-warm", "si-offline")
LABELS = {
    "local": "local import, .pyc (floor)",
    "local-nopyc": "local import, no bytecode",
    "httpimport": f"httpimport {HTTPIMPORT_VERSION}",
    "si-cold": "secure_import cold (empty cache)",
    "si-warm": "secure_import warm + freshness check",
    "si-offline": "secure_import warm, offline",
}


@dataclass
class Sample:
    wall: float
    result: dict[str, Any]
    tally: Tally


@dataclass
class Row:
    variant: str
    n: int
    samples: list[Sample] = field(default_factory=list)
    traced_peak: int | None = None
    trace_maxrss: int | None = None

    def values(self, get: Callable[[Sample], float]) -> list[float]:
        return [get(s) for s in self.samples]

    def median(self, get: Callable[[Sample], float]) -> float:
        return statistics.median(self.values(get))


def _imp(s: Sample) -> float:
    return float(s.result["import"])


# -- environment ------------------------------------------------------------


def httpimport_python() -> Path:
    """The httpimport venv's interpreter, created with pip on first use."""
    python = HTTPIMPORT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(HTTPIMPORT_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"httpimport=={HTTPIMPORT_VERSION}"],
            check=True,
        )
    return python


def run_child(
    python: Path | str, cfg: dict[str, Any], *, no_bytecode: bool = False
) -> tuple[float, dict[str, Any]]:
    cmd = [str(python), "-I"] + (["-B"] if no_bytecode else []) + [str(CHILD), json.dumps(cfg)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"child failed ({cfg['mode']}, {cfg.get('package')}):\n{proc.stdout}\n{proc.stderr}"
        )
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.sizes: list[int] = args.sizes
        src = work / "src"
        for n in self.sizes:
            generate(src, n)
        self.pyc_root = work / "local-pyc"
        shutil.copytree(src, self.pyc_root)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(self.pyc_root)], check=True)
        self.nopyc_root = work / "local-src"
        shutil.copytree(src, self.nopyc_root)
        key_path, self.pub_path = generate_keypair("bench", work / "keys")
        publish(src, work / "repo", private_keys=[load_private_key_file(key_path)])
        self.server = BenchServer(
            work / "repo", work, delay=args.delay_ms / 1000, conn_delay=args.conn_delay_ms / 1000
        )
        self.variants = [v for v in VARIANTS if v != "httpimport" or args.httpimport]
        self.hi_python = httpimport_python() if args.httpimport else None
        self._dirs = 0

    def fresh_dirs(self, label: str) -> Path:
        self._dirs += 1
        path = self.work / "si" / f"{label}-{self._dirs}"
        path.mkdir(parents=True)
        os.chmod(path, 0o700)
        return path

    def config(self, variant: str, n: int, dirs: Path | None, **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "mode": variant,
            "package": package_name(n),
            "expected": expected_check(n),
            "modules": n,
            "project": str(PROJECT),
            "url": self.server.url,
            "ca": str(self.server.ca_path),
            "pubkey": str(self.pub_path),
            "pkgroot": str(self.pyc_root if variant == "local" else self.nopyc_root),
            "dirs": None if dirs is None else str(dirs),
        }
        cfg.update(extra)
        return cfg

    def once(self, variant: str, n: int, dirs: Path | None, **extra: Any) -> Sample:
        python: Path | str = sys.executable
        if variant == "httpimport":
            assert self.hi_python is not None
            python = self.hi_python
        self.server.reset()
        wall, result = run_child(
            python, self.config(variant, n, dirs, **extra), no_bytecode=variant == "local-nopyc"
        )
        sample = Sample(wall, result, self.server.tally())
        self.check_sample(variant, n, sample)
        return sample

    def check_sample(self, variant: str, n: int, s: Sample) -> None:
        """Correctness of the harness and of the structural claims (not timings)."""
        t = s.tally
        if variant.startswith("local"):
            assert t.requests == 0, f"{variant} made requests"
        if variant.startswith("si-"):
            assert t.not_found == 0, f"{variant} N={n}: {t.not_found} requests got 404"
            assert s.result["client_requests"] == t.requests, (variant, n, s.result, t)
        if variant == "si-offline":
            assert t.requests == 0 and t.connections == 0, f"offline contacted the server: {t}"
        if variant == "si-warm":
            # one small pointer request per process (freshness never relies on 304s)
            assert t.requests == 1, f"warm N={n}: {t}"
        if variant == "si-cold":
            assert t.requests <= 2, f"cold N={n} made {t.requests} requests"

    def prime_warm(self, n: int) -> Path:
        dirs = self.fresh_dirs(f"warm{n}")
        self.once("si-cold", n, dirs)
        self.once("si-warm", n, dirs)  # bytecode and page cache settle
        return dirs

    def run(self) -> tuple[list[Row], list[dict[str, Any]]]:
        rows: list[Row] = []
        for n in self.sizes:
            by_variant = {v: Row(v, n) for v in self.variants}
            warm_dirs = self.prime_warm(n)
            self.once("local", n, None)  # warm the page cache for the floor too
            for _ in range(self.args.runs):
                for variant in self.variants:
                    dirs = None
                    if variant == "si-cold":
                        dirs = self.fresh_dirs(f"cold{n}")
                    elif variant in ("si-warm", "si-offline"):
                        dirs = warm_dirs
                    by_variant[variant].samples.append(self.once(variant, n, dirs))
                    print(".", end="", file=sys.stderr, flush=True)
            if self.args.memory:
                for variant in self.variants:
                    if variant == "httpimport":
                        continue
                    dirs = (
                        self.fresh_dirs(f"mem{n}")
                        if variant == "si-cold"
                        else (warm_dirs if variant.startswith("si-") else None)
                    )
                    mem = self.once(variant, n, dirs, trace=True)
                    by_variant[variant].traced_peak = int(mem.result["traced_peak"])
            print(f" N={n} done", file=sys.stderr, flush=True)
            rows.extend(by_variant.values())
        overhead = self.overhead() if self.args.overhead else []
        return rows, overhead

    def overhead(self) -> list[dict[str, Any]]:
        """Imports the finder does not serve: local package + absent names."""
        n = max(self.sizes)
        dirs = self.prime_warm(n)
        results: dict[str, list[dict[str, Any]]] = {"none": [], "repo": [], "repo-allow": []}
        for _ in range(self.args.runs):
            for variant in results:
                cfg = self.config(
                    "overhead", n, dirs, misses=self.args.misses, pkgroot=str(self.pyc_root)
                )
                cfg["variant"] = variant
                if variant == "repo-allow":
                    cfg["allow"] = [package_name(n)]
                self.server.reset()
                _, out = run_child(sys.executable, cfg)
                out["requests"] = self.server.tally().requests
                results[variant].append(out)
        cfg = self.config(
            "overhead-paired",
            n,
            dirs,
            rounds=self.args.paired_rounds,
            misses=PAIRED_MISSES,
            allow=[package_name(n)],
        )
        _, paired = run_child(sys.executable, cfg)
        summary: list[dict[str, Any]] = [{"variant": "paired", "n": n, **paired["paired"]}]
        for variant, outs in results.items():
            summary.append(
                {
                    "variant": variant,
                    "n": n,
                    "local": [o["local"] for o in outs],
                    "misses": [o["misses"] for o in outs],
                    "requests": max(o["requests"] for o in outs),
                }
            )
        return summary

    def close(self) -> None:
        self.server.stop()


# -- report -------------------------------------------------------------------


def ms(values: Sequence[float]) -> str:
    med = statistics.median(values) * 1000
    if len(values) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def _older(s: Sample) -> int:
    """Generation 1 and 2 collections inside one timed import."""
    _young, *older = s.result.get("collections", [0, 0, 0])
    return sum(older)


def _collections(row: Row) -> str:
    """``young/older`` collections of the run with the median import time."""
    ordered = sorted(row.samples, key=_imp)
    middle = ordered[len(ordered) // 2].result.get("collections", [0, 0, 0])
    return f"{middle[0]}/{middle[1] + middle[2]}"


def _paired_costs(overhead: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per round, the seconds per absent name a finder adds over no finder."""
    [paired] = [x for x in overhead if x["variant"] == "paired"]
    return {
        name: [
            (t - none) / PAIRED_MISSES for t, none in zip(paired[name], paired["none"], strict=True)
        ]
        for name in ("secure", "empty")
    }


def _us(values: Sequence[float]) -> str:
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2 * 1e6:.2f} ({q1 * 1e6:.2f} to {q3 * 1e6:.2f})"


def _environment() -> str:
    """Where the children ran: what else is installed changes what httpx imports
    at start-up, hence the heap the garbage collector walks."""
    kind = "virtual environment" if sys.prefix != sys.base_prefix else "system interpreter"
    count = len({d.metadata["Name"] for d in importlib.metadata.distributions()})
    return f"{kind}, {count} distributions installed"


def render(
    rows: list[Row], overhead: list[dict[str, Any]], args: argparse.Namespace, command: str
) -> tuple[str, list[str]]:
    floor = {r.n: r for r in rows if r.variant == "local"}
    incumbent = {r.n: r for r in rows if r.variant == "httpimport"}
    lines = [
        "# secure_import benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()} ({_environment()}); {args.runs} fresh processes per "
        "row (variants "
        f"interleaved); injected delay {args.delay_ms:g} ms per request, "
        f"{args.conn_delay_ms:g} ms per new connection; loopback HTTPS (trustme CA).",
        "",
        "*import ms*: `import pkg` + `pkg.check()` inside the child, median (min-max), "
        "including every round trip the import makes. *setup ms*: `import secure_import` + "
        "`add_repo()` (no network) or `import httpimport`. *req / 404 / conn / KiB*: "
        "requests, 404 answers, new TLS connections and body bytes seen by the server, "
        "per process. *traced peak*: tracemalloc peak of Python allocations during the "
        "import (a separate traced run). *maxrss*: the child's whole-process peak RSS "
        "(interpreter and libraries included). *GC*: garbage-collector passes inside the "
        "timed import, median run: young (generation 0) / older (generation 1 or 2); an "
        "older pass costs ~0.2-0.6 ms here, and whether one falls inside the import "
        "depends on what the process allocated before it (the setup), not on the import "
        "alone.",
        "",
        "| variant | N | import ms | x local .pyc | cold ÷ httpimport | req | 404 | conn | "
        "KiB | setup ms | traced peak KiB | maxrss MiB | GC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = floor[row.n].median(_imp)
        med = row.median(_imp)
        vs_hi = ""
        if row.variant == "si-cold" and row.n in incumbent:
            vs_hi = f"1/{incumbent[row.n].median(_imp) / med:.0f}"
        t = [s.tally for s in row.samples]
        lines.append(
            f"| {LABELS[row.variant]} | {row.n} | {ms(row.values(_imp))} | {med / base:.2f}x | "
            f"{vs_hi} | {max(x.requests for x in t)} | {max(x.not_found for x in t)} | "
            f"{max(x.connections for x in t)} | "
            f"{statistics.median(x.body_bytes for x in t) / 1024:.0f} | "
            f"{statistics.median(s.result['setup'] for s in row.samples) * 1000:.1f} | "
            f"{'' if row.traced_peak is None else f'{row.traced_peak / 1024:.0f}'} | "
            f"{statistics.median(s.result['maxrss_kb'] for s in row.samples) / 1024:.1f} | "
            f"{_collections(row)} |"
        )
    if overhead:
        lines += [
            "",
            "Imports the finder does not serve (fresh processes, "
            f"N={overhead[0]['n']} local modules with .pyc, then {args.misses} imports of "
            "absent names):",
            "",
            "| secure_import | local package ms | absent names ms | requests |",
            "|---|---:|---:|---:|",
        ]
        names = {
            "none": "not imported",
            "repo": "repo added (names from manifest)",
            "repo-allow": "repo added with modules=[...]",
        }
        for item in overhead:
            if item["variant"] in names:
                lines.append(
                    f"| {names[item['variant']]} | {ms(item['local'])} | "
                    f"{ms(item['misses'])} | {item['requests']} |"
                )
        paired = _paired_costs(overhead)
        lines += [
            "",
            f"The same in one process ({len(paired['secure'])} rounds of {PAIRED_MISSES} absent "
            "names, three ways in rotating order): added cost per import not served, "
            "median of the rounds (interquartile range), against no finder at the end of "
            "`sys.meta_path`:",
            "",
            "| finder at the end of sys.meta_path | µs per import not served |",
            "|---|---:|",
            f"| secure_import (repository with modules=) | {_us(paired['secure'])} |",
            f"| an empty finder (`find_spec` returns None) | {_us(paired['empty'])} |",
        ]
    verdicts = targets(rows, overhead, args)
    lines += ["", "## Targets (issue 5)", ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines) + "\n", verdicts


def targets(rows: list[Row], overhead: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    get = {(r.variant, r.n): r for r in rows}
    out: list[str] = []
    big = [n for n in (50, 200) if n in {r.n for r in rows}]

    def ratio(variant: str, n: int, base: str = "local") -> float:
        return get[(variant, n)].median(_imp) / get[(base, n)].median(_imp)

    def mark(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    if big and ("si-offline", big[0]) in get:
        figures = ", ".join(f"N={n}: {ratio('si-offline', n):.2f}x" for n in big)
        ok = all(ratio("si-offline", n) <= 1.2 for n in big)
        out.append(f"{mark(ok)} warm, no network ≤ 1.2x local .pyc — {figures}")
        for n in big:
            mine = sum(1 for s in get[("si-offline", n)].samples if _older(s))
            theirs = sum(1 for s in get[("local", n)].samples if _older(s))
            runs = len(get[("si-offline", n)].samples)
            out.append(
                f"INFO warm, no network N={n}: an older-generation GC pass ran inside the "
                f"import in {mine} of {runs} runs (local .pyc: {theirs} of {runs})"
            )
    if ("si-warm", max(args.sizes)) in get:
        reqs = {n: max(s.tally.requests for s in get[("si-warm", n)].samples) for n in args.sizes}
        ok = set(reqs.values()) == {1}
        out.append(
            f"{mark(ok)} warm with freshness check, round trips: "
            f"{sorted(set(reqs.values()))} request(s) per process for every N (one "
            "conditional GET, 304), never one per module"
        )

        def rest(s: Sample) -> float:
            """The import without its network share (client set-up and request)."""
            return _imp(s) - float(s.result.get("request_s", 0.0))

        def rest_ratio(n: int) -> float:
            return statistics.median(rest(s) for s in get[("si-warm", n)].samples) / get[
                ("local", n)
            ].median(_imp)

        def detail(n: int) -> str:
            samples = get[("si-warm", n)].samples
            request = statistics.median(float(s.result.get("request_s", 0.0)) for s in samples)
            older = sum(1 for s in samples if _older(s))
            return (
                f"N={n}: {rest_ratio(n):.2f}x (network {request * 1000:.1f} ms; an older "
                f"GC pass in {older} of {len(samples)} runs)"
            )

        figures = ", ".join(detail(n) for n in big)
        if big:
            out.append(
                f"{mark(all(rest_ratio(n) <= 1.2 for n in big))} warm with freshness check, "
                "time: the import minus its network share (TLS client set-up + the one "
                f"request) ≤ 1.2x local .pyc — {figures}"
            )
    if big and ("httpimport", big[0]) in get:
        figures = ", ".join(f"N={n}: 1/{1 / ratio('si-cold', n, 'httpimport'):.0f}" for n in big)
        ok = all(ratio("si-cold", n, "httpimport") <= 0.1 for n in big)
        out.append(
            f"{mark(ok)} cold ≤ 1/10 of httpimport at {args.delay_ms:g} ms/request — {figures}"
        )
    cold = {
        n: max(s.tally.requests for s in get[("si-cold", n)].samples)
        for n in args.sizes
        if ("si-cold", n) in get
    }
    conns = {
        n: max(s.tally.connections for s in get[("si-cold", n)].samples)
        for n in args.sizes
        if ("si-cold", n) in get
    }
    out.append(
        f"{mark(len(set(cold.values())) == 1)} cold round trips independent of N — "
        f"requests per N {cold}, new connections {conns}"
    )
    fours = sum(s.tally.not_found for r in rows if r.variant.startswith("si-") for s in r.samples)
    hi = sum(s.tally.not_found for r in rows if r.variant == "httpimport" for s in r.samples)
    out.append(
        f"{mark(fours == 0)} zero 404s — secure_import: {fours} in all runs (httpimport: {hi})"
    )
    if overhead:
        o = {x["variant"]: x for x in overhead}
        base = statistics.median(o["none"]["local"])
        allow = statistics.median(o["repo-allow"]["local"])
        miss_base = statistics.median(o["none"]["misses"])
        miss_allow = statistics.median(o["repo-allow"]["misses"])
        # Any entry at the end of sys.meta_path costs every import that reaches
        # it (importlib's lock and call): the floor.  "Not measurable" for our
        # finder: paired in the same rounds, it is not slower than an empty
        # finder more often than chance allows (sign test, ~2 sigma).
        paired = _paired_costs(overhead)
        secure, floor = (statistics.median(paired[k]) for k in ("secure", "empty"))
        rounds = len(paired["secure"])
        slower = sum(1 for a, b in zip(paired["secure"], paired["empty"], strict=True) if a > b)
        limit = rounds / 2 + math.sqrt(rounds)
        out.append(
            f"{mark(slower <= limit)} the finder adds no measurable cost to imports it does not "
            f"serve beyond what any sys.meta_path entry costs (one process, {rounds} rounds of "
            f"{PAIRED_MISSES} absent names; ours slower than an empty finder in {slower} rounds, "
            f"measurable above {limit:.0f}) — per import not served: ours {secure * 1e6:.2f} µs, "
            f"empty finder {floor * 1e6:.2f} µs, the absent name itself "
            f"{miss_base / args.misses * 1e6:.1f} µs; local modules never reach it"
        )
        spread = max(o["none"]["local"]) - min(o["none"]["local"])
        miss_spread = max(o["none"]["misses"]) - min(o["none"]["misses"])
        out.append(
            f"INFO across fresh processes, repository with modules= vs no secure_import "
            f"(difference of medians vs spread of the runs without): local package "
            f"{(allow - base) * 1000:+.2f} ms vs {spread * 1000:.2f} ms, {args.misses} absent "
            f"names {(miss_allow - miss_base) * 1000:+.2f} ms vs {miss_spread * 1000:.2f} ms"
        )
        out.append(
            f"INFO without modules= the first unknown top-level name fetches the manifest "
            f"({o['repo']['requests']} request): absent names "
            f"{statistics.median(o['repo']['misses']) * 1000:.1f} ms, local package "
            f"{statistics.median(o['repo']['local']) * 1000:.1f} ms"
        )
    n_mem = max(args.sizes)
    if get.get(("si-cold", n_mem)) and get[("si-cold", n_mem)].traced_peak:
        cold_peak = get[("si-cold", n_mem)].traced_peak or 0
        local_peak = get[("local", n_mem)].traced_peak or 1
        # A target only where the package dominates: below N=50 the fixed cost
        # of the TLS/HTTP stack loaded by a cold import outweighs a tiny package
        # (bench/README.md), so the quick run's N=10 figure is information.
        ok = cold_peak <= 1.5 * local_peak
        verdict = mark(ok) if n_mem >= 50 else "INFO (not a target below N=50)"
        out.append(
            f"{verdict} peak memory of a cold import at N={n_mem} "
            f"≤ 1.5x local (tracemalloc peak during the import): "
            f"{cold_peak / 1024:.0f} KiB vs {local_peak / 1024:.0f} KiB = "
            f"{cold_peak / local_peak:.2f}x"
        )
    wired = [
        s.result.get("bytecode_files", 0)
        for r in rows
        if r.variant == "si-offline"
        for s in r.samples
    ]
    out.append(
        f"INFO bytecode cache files present on warm runs: {max(wired, default=0)} "
        "(0 means the BytecodeStore is not wired into the loader)"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke: N in {1,10}, 1 run, no delay, no httpimport"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50, 200]
    )
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--conn-delay-ms", type=float, default=0.0)
    parser.add_argument("--misses", type=int, default=1000)
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=150,
        help="rounds of the in-process finder-cost measurement",
    )
    parser.add_argument("--no-httpimport", dest="httpimport", action="store_false")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown output (default bench/results/latest.md; none in --quick)",
    )
    args = parser.parse_args(argv)
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.quick:
        args.runs, args.sizes, args.delay_ms, args.conn_delay_ms = 1, [1, 10], 0.0, 0.0
        args.httpimport, args.misses, args.paired_rounds = False, 50, 6
    args.memory = True
    args.overhead = True
    if args.out is None and not args.quick:
        args.out = HERE / "results" / "latest.md"
    work = Path(tempfile.mkdtemp(prefix="si-bench-"))
    os.chmod(work, 0o700)
    bench = None
    try:
        bench = Bench(args, work)
        rows, overhead = bench.run()
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
    text, _ = render(rows, overhead, args, command.strip())
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.quick:
        import quick  # the whole-process benchmarks' quick modes (bench/quick.py)

        quick.run_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
