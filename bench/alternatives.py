"""secure_import against ``pip install`` / ``uv pip install`` of the same package.

Usage (from the repository root, in an environment with ``.[test,bench]``)::

    python bench/alternatives.py --runs 10      # writes bench/results/alternatives.md
    python bench/alternatives.py --quick        # CI: N=10, 1 run, no delay, no report

The synthetic package ``benchpkg<N>`` (``genpkg.py``, N=200 by default) is
built into a wheel with ``zipfile`` (offline) and served from a PEP 503 index
on loopback HTTPS; the same tree is signed into a repository served with the
same injected delay per request.  See ``contenders.py`` for the variants and
what each time includes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import trustme  # noqa: E402
from common import SiRepo, machine_note, med, mib, ms, write_report  # noqa: E402
from contenders import Scenario, measure, venv_costs  # noqa: E402
from genpkg import expected_check, generate, package_name  # noqa: E402
from pkgindex import build_wheel, write_index  # noqa: E402
from server import BenchServer  # noqa: E402

from secure_import.publish.sign import publish  # noqa: E402
from secure_import.store.keyfiles import generate_keypair, load_private_key_file  # noqa: E402

LABELS = {
    "pip": "`pip install` + first import",
    "uv": "`uv pip install` + first import",
    "si-cold": "secure_import cold (first import)",
    "installed": "installed package, import",
    "si-warm": "secure_import warm + freshness check",
    "si-offline": "secure_import warm, offline",
    "bare": "`python -I -c pass`",
}


def synthetic(work: Path, n: int, delay: float) -> Scenario:
    """benchpkg<n> as a wheel on an index and as a signed repository."""
    src = work / "src"
    generate(src, n)
    wheel = build_wheel(src / package_name(n), work / "wheels")
    write_index(work / "index", [wheel])
    key, pub = generate_keypair("bench", work / "keys")
    publish(src, work / "repo", private_keys=[load_private_key_file(key)])
    ca = trustme.CA()
    index = BenchServer(work / "index", work, delay=delay, index_pages=True, ca=ca)
    repo = BenchServer(work / "repo", work, delay=delay, ca=ca)
    name = package_name(n)
    return Scenario(
        name=f"{name}",
        work=work,
        index=index,
        repos=[repo],
        si_repos=[SiRepo(repo.url, str(pub), str(repo.ca_path))],
        requirements=[name],
        imports=[name],
        check=f"assert {name}.check() == {expected_check(n)}",
        wheel_bytes=wheel.stat().st_size,
    )


def table(s: Scenario) -> list[str]:
    """The rows of one scenario: cold contenders, then later processes."""
    got = s.samples
    cold = med(x.total for x in got["si-cold"])
    installed = med(x.total for x in got["installed"])
    lines = [
        "| variant | whole process(es) ms | CPU ms | install ms | first import process ms | "
        "÷ secure_import cold | ÷ installed import | requests | KiB on the wire | "
        "peak RSS MiB | cache (KiB, files) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, samples in got.items():
        total = [x.total for x in samples]
        install = ms([x.install for x in samples]) if variant in ("pip", "uv") else ""
        first = ms([x.first_import for x in samples]) if variant in ("pip", "uv") else ""
        cache = ""
        if variant == "si-cold":
            cache = (
                f"{med(x.cache_bytes for x in samples) / 1024:.0f}, "
                f"{med(x.cache_files for x in samples):.0f}"
            )
        lines.append(
            f"| {LABELS[variant]} | {ms(total)} | {ms([x.cpu for x in samples])} | "
            f"{install} | {first} | "
            f"{med(total) / cold:.2f} | {med(total) / installed:.2f} | "
            f"{max(x.requests for x in samples)} | "
            f"{med(x.body_bytes for x in samples) / 1024:.0f} | "
            f"{mib([x.hwm_kib for x in samples])} | {cache} |"
        )
    return lines


def verdicts(s: Scenario, *, memory: bool = False) -> list[str]:
    """The issue's targets for one scenario, MET or MISSED with the figures.

    Judged on wall time (what the user waits), with the CPU-time ratio beside
    it: on a machine other sessions load, CPU time is the steadier figure.
    """
    got = s.samples

    def mark(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    def both(variant: str) -> tuple[float, float]:
        return med(x.total for x in got[variant]), med(x.cpu for x in got[variant])

    cold, cold_cpu = both("si-cold")
    out = []
    for rival, command in (("uv", "uv pip install"), ("pip", "pip install")):
        if rival in got:
            theirs, theirs_cpu = both(rival)
            out.append(
                f"{mark(cold < theirs)} {s.name}: secure_import cold (whole process) faster "
                f"than `{command}` + first import: {cold * 1000:.0f} ms vs "
                f"{theirs * 1000:.0f} ms wall ({cold / theirs:.2f}x); CPU "
                f"{cold_cpu * 1000:.0f} vs {theirs_cpu * 1000:.0f} ms "
                f"({cold_cpu / theirs_cpu:.2f}x)"
            )
    wire = med(x.body_bytes for x in got["si-cold"])
    out.append(
        f"{mark(wire <= s.wheel_bytes)} {s.name}: bytes on the wire (cold, response bodies) "
        f"≤ the wheel's: {wire / 1024:.0f} KiB vs {s.wheel_bytes / 1024:.0f} KiB "
        f"({wire / s.wheel_bytes:.2f}x)"
    )
    installed, installed_cpu = both("installed")
    offline, offline_cpu = both("si-offline")
    bound = 1.2 if memory else 1.1
    out.append(
        f"{mark(offline <= bound * installed)} {s.name}: warm offline ≤ {bound}x the installed "
        f"package's import (whole processes): {offline * 1000:.0f} vs "
        f"{installed * 1000:.0f} ms wall = {offline / installed:.2f}x; CPU "
        f"{offline_cpu * 1000:.0f} vs {installed_cpu * 1000:.0f} ms = "
        f"{offline_cpu / installed_cpu:.2f}x"
    )
    if memory:
        mine = med(x.hwm_kib for x in got["si-offline"])
        theirs = med(x.hwm_kib for x in got["installed"])
        out.append(
            f"{mark(mine <= 1.5 * theirs)} {s.name}: peak memory warm offline ≤ 1.5x installed: "
            f"{mine / 1024:.1f} vs {theirs / 1024:.1f} MiB = {mine / theirs:.2f}x"
        )
    return out


def report(
    scenarios: list[Scenario], title: str, command: str, runs: int, delay_ms: float, notes: str
) -> str:
    lines = [f"# {title}", "", f"Command: `{command}`", "", machine_note(runs), ""]
    lines += [
        f"Loopback HTTPS (trustme CA), injected delay {delay_ms:g} ms per request for the "
        "package index and the signed repositories alike. " + notes,
        "",
    ]
    for s in scenarios:
        lines += [f"## {s.name}", "", *([s.note, ""] if s.note else []), *table(s), ""]
    lines += ["## Targets", ""]
    for s in scenarios:
        lines += [f"- {v}" for v in verdicts(s, memory=s.name.startswith("sympy"))]
    return "\n".join(lines) + "\n"


NOTES = (
    "*whole process(es)*: wall time seen by the parent, interpreter start included; for "
    "pip and uv the install process plus the first import's process (a fresh copy of a "
    "template virtual environment each run: creating it is not timed, see below); pip "
    "runs with `--no-cache-dir` and uv with an empty cache (`UV_CACHE_DIR`), both with "
    "no configuration file of this machine. *peak RSS*: the importing process's VmHWM. "
    "*KiB on the wire*: response bodies counted by the servers (the index page and the "
    "wheel; the manifest, pointer and bundle). *cache*: secure_import's cache directory "
    "after a cold run."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI: N=10, 1 run, no delay")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python bench/alternatives.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.quick:
        args.runs, args.modules, args.delay_ms = 1, 10, 0.0
    elif args.out is None:
        args.out = HERE / "results" / "alternatives.md"
    work = Path(tempfile.mkdtemp(prefix="si-bench-alt-"))
    os.chmod(work, 0o700)
    scenario = None
    try:
        scenario = synthetic(work, args.modules, args.delay_ms / 1000)
        measure(scenario, args.runs)
        costs = venv_costs(work, 1 if args.quick else 3)
        notes = (
            NOTES
            + " Environment creation (not timed in the rows): "
            + ", ".join(f"`{k}` {statistics.median(v) * 1000:.0f} ms" for k, v in costs.items())
        )
        text = report(
            [scenario],
            "secure_import vs pip and uv",
            command.strip(),
            args.runs,
            args.delay_ms,
            notes + ".",
        )
    finally:
        if scenario is not None:
            for server in scenario.servers():
                server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        # Timings from a quick run mean nothing: no verdicts, only that it ran.
        print("bench/alternatives.py --quick: harness checks passed")
    else:
        write_report(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
