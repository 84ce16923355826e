"""How cost grows: modules per package (N) and repositories configured (R).

Usage (from the repository root)::

    python bench/scaling.py --runs 5     # writes bench/results/scaling.md
    python bench/scaling.py --quick      # CI: N in {1, 10}, R in {1, 3}, 1 run

N table: ``benchpkg<N>`` (``genpkg.py``) for N = 1, 10, 50, 200, 1000, imported
in fresh processes from a local directory with ``.pyc`` (the floor), and
through secure_import cold (empty cache) and warm offline.  Columns: the
import alone (timed inside the child) and the whole process (timed by the
parent), peak RSS, and the growth per module between consecutive sizes.

R table: R = 1, 10, 100 repositories added in one process (``offline=True``,
``modules=[...]``, warm caches), each a different URL on the same loopback
server with its own one-module package; then the 200-module package served by
the first repository is imported, then 1,000 absent names.  ``add_repo``'s
cost per repository and the cost per absent name must stay flat as R grows:
the finder resolves a name through an index, not by asking each repository.
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
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    Run,
    SiRepo,
    consumer_python,
    fresh_dir,
    machine_note,
    med,
    plain_program,
    run,
    si_env,
    si_program,
    write_report,
)
from genpkg import expected_check, generate, package_name  # noqa: E402
from server import BenchServer  # noqa: E402

from secure_import.publish.sign import publish  # noqa: E402
from secure_import.store.keyfiles import generate_keypair, load_private_key_file  # noqa: E402

MISSES = 1000
#: The package imported in the R table (served by the first repository).
R_PACKAGE = 200


def _check(n: int) -> str:
    return f"assert {package_name(n)}.check() == {expected_check(n)}"


def r_program(repos: list[SiRepo], pub: str, misses: int) -> str:
    """Add every repository, import the big package, then absent names.

    With no repository (R=0) the same program without secure_import: the
    package from its local ``.pyc`` directory (``PYC_ROOT`` placeholder), the
    floor for both columns.
    """
    if not repos:
        return _R0.replace("MISSES", str(misses))
    adds = "\n".join(
        f"_si.add_repo({r.url!r}, keys=[{pub!r}], ca_bundle={r.ca!r}, offline=True, "
        f"modules={list(r.modules or ())!r}); _ts.append(_time.perf_counter())"
        for r in repos
    )
    k = min(10, len(repos))
    name = package_name(R_PACKAGE)
    return f"""import time as _time
import sys as _sys; _sys.path.insert(0, {str(PROJECT)!r})
import secure_import as _si
_ta = _time.perf_counter()
_ts = [_ta]
{adds}
_tb = _time.perf_counter()
_each = [b - a for a, b in zip(_ts, _ts[1:])]
_first, _last = sum(_each[:{k}]) / {k}, sum(_each[-{k}:]) / {k}
_t0 = _time.perf_counter()
import {name}
{_check(R_PACKAGE)}
_t1 = _time.perf_counter()
for _i in range({misses}):
    try:
        __import__(f"absent_scaling_{{_i:05d}}")
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("an absent name was found")
_tm = _time.perf_counter() - _t1
_hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]
print('BENCH', _t1 - _t0, _hwm[0].split()[1], f'add={{(_tb - _ta) / {len(repos)}}}',
      f'first={{_first}}', f'last={{_last}}', f'miss={{_tm / {misses}}}', flush=True)
"""


_R0 = f"""import time as _time
import sys as _sys; _sys.path.insert(0, {str(PROJECT)!r}); _sys.path.insert(0, "PYC_ROOT")
_t0 = _time.perf_counter()
import {package_name(R_PACKAGE)}
{_check(R_PACKAGE)}
_t1 = _time.perf_counter()
for _i in range(MISSES):
    try:
        __import__(f"absent_scaling_{{_i:05d}}")
    except ModuleNotFoundError:
        pass
_tm = _time.perf_counter() - _t1
_hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]
print('BENCH', _t1 - _t0, _hwm[0].split()[1], 'add=0', 'first=0', 'last=0',
      f'miss={{_tm / MISSES}}', flush=True)
"""


class Scaling:
    def __init__(self, work: Path, sizes: list[int], repo_counts: list[int]) -> None:
        self.work = work
        self.sizes = sizes
        self.repo_counts = repo_counts
        src = work / "src"
        for n in {*sizes, R_PACKAGE}:
            generate(src, n)
        self.pyc = work / "pyc"
        shutil.copytree(src, self.pyc)
        run([sys.executable, "-m", "compileall", "-q", str(self.pyc)])
        key, pub = generate_keypair("bench", work / "keys")
        self.pub = str(pub)
        private = load_private_key_file(key)
        served = work / "served"
        publish(src, served / "main", private_keys=[private])
        for i in range(1, max(repo_counts)):
            tiny = work / "tiny" / f"r{i}"
            (tiny / f"rpkg{i}").mkdir(parents=True)
            (tiny / f"rpkg{i}" / "__init__.py").write_text(f"VALUE = {i}\n")
            publish(tiny, served / f"r{i}", private_keys=[private])
        self.server = BenchServer(served, work)
        self.python = str(consumer_python(work))
        self.ca = str(self.server.ca_path)
        self.main = SiRepo(self.server.url + "main/", self.pub, self.ca)

    def n_once(self, variant: str, n: int, warm: Path) -> Run:
        name = package_name(n)
        if variant == "local":
            return run([self.python, "-I", "-c", plain_program([name], _check(n), str(self.pyc))])
        dirs = fresh_dir(self.work / "si", "cold") if variant == "si-cold" else warm
        program = si_program([self.main], [name], check=_check(n), offline=variant == "si-offline")
        self.server.reset()
        result = run([self.python, "-I", "-c", program], env=si_env(dirs))
        requests = self.server.tally().requests
        if variant == "si-offline":
            assert requests == 0, f"offline N={n} made {requests} requests"
        else:
            # The manifest, then the package's bundle(s): one, or one per unit
            # when a large package is split; never one per module.
            assert 2 <= requests <= 2 + n // 10, f"cold N={n}: {requests} requests"
            result.extra["requests"] = requests
            shutil.rmtree(dirs, ignore_errors=True)
        return result

    def n_table(self, runs: int) -> dict[tuple[str, int], list[Run]]:
        warm = fresh_dir(self.work / "si", "warm")
        out: dict[tuple[str, int], list[Run]] = {}
        variants = ["local", "si-cold", "si-offline"]
        for n in self.sizes:
            fill = si_program([self.main], [package_name(n)], check=_check(n))
            for _ in range(2):  # fill the shared warm cache for N; bytecode settles
                run([self.python, "-I", "-c", fill], env=si_env(warm))
            for i in range(runs):
                shift = i % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    out.setdefault((variant, n), []).append(self.n_once(variant, n, warm))
                    print(".", end="", file=sys.stderr, flush=True)
        return out

    def r_repos(self, r: int) -> list[SiRepo]:
        main = SiRepo(self.main.url, self.pub, self.ca, modules=(package_name(R_PACKAGE),))
        return [main] + [
            SiRepo(f"{self.server.url}r{i}/", self.pub, self.ca, modules=(f"rpkg{i}",))
            for i in range(1, r)
        ]

    def r_table(self, runs: int, misses: int) -> dict[int, list[Run]]:
        out: dict[int, list[Run]] = {}
        warm = {r: fresh_dir(self.work / "si", f"r{r}") for r in self.repo_counts}
        for r, dirs in warm.items():
            # Fill the caches: every repository's package once, online.
            repos = self.r_repos(r)
            names = [m for repo in repos for m in repo.modules or ()]
            run([self.python, "-I", "-c", si_program(repos, names)], env=si_env(dirs))
        counts = [0, *self.repo_counts]
        for i in range(runs):
            shift = i % len(counts)
            order = counts[shift:] + counts[:shift]
            for r in order:
                self.server.reset()
                repos = self.r_repos(r) if r else []
                program = r_program(repos, self.pub, misses).replace("PYC_ROOT", str(self.pyc))
                env = si_env(warm[r]) if r else si_env(self.work / "unused")
                out.setdefault(r, []).append(run([self.python, "-I", "-c", program], env=env))
                assert self.server.tally().requests == 0, f"R={r} offline made requests"
                print(".", end="", file=sys.stderr, flush=True)
        return out


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def render(
    n_rows: dict[tuple[str, int], list[Run]],
    r_rows: dict[int, list[Run]],
    sizes: list[int],
    command: str,
    runs: int,
    misses: int,
) -> str:
    lines = [
        "# How cost grows: modules (N) and repositories (R)",
        "",
        f"Command: `{command}`",
        "",
        machine_note(runs),
        "",
        "No injected delay (loopback HTTPS): the rows show the importer's own cost. "
        "*import*: timed inside the child (`import` + `check()`); *process*: the whole "
        "process timed by the parent; *CPU*: the process's user + system time; *RSS*: peak "
        "resident set (VmHWM). *per module*: growth of the import time per added module "
        "since the previous N.",
        "",
        "| N | local .pyc import ms | cold import ms | warm offline import ms | local process "
        "ms | cold process ms | offline process ms | cold CPU ms | offline CPU ms | local "
        "RSS MiB | cold RSS MiB | offline RSS MiB | cold requests | per module: local / cold / "
        "offline ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    prev: int | None = None
    for n in sizes:

        def get(v: str, field: str, n: int = n) -> float:
            return med(getattr(x, field) for x in n_rows[(v, n)])

        slope = ""
        if prev is not None:
            slope = " / ".join(
                f"{(get(v, 'imported') - get(v, 'imported', prev)) / (n - prev) * 1000:.2f}"
                for v in ("local", "si-cold", "si-offline")
            )
        lines.append(
            f"| {n} | "
            + " | ".join(
                f"{get(v, 'imported') * 1000:.1f}" for v in ("local", "si-cold", "si-offline")
            )
            + " | "
            + " | ".join(f"{get(v, 'wall') * 1000:.0f}" for v in ("local", "si-cold", "si-offline"))
            + " | "
            + " | ".join(f"{get(v, 'cpu') * 1000:.0f}" for v in ("si-cold", "si-offline"))
            + " | "
            + " | ".join(
                f"{get(v, 'hwm_kib') / 1024:.1f}" for v in ("local", "si-cold", "si-offline")
            )
            + f" | {max(x.extra['requests'] for x in n_rows[('si-cold', n)]):.0f}"
            + f" | {slope} |"
        )
        prev = n
    lines += [
        "",
        f"R repositories added offline with `modules=` (warm caches), then `import "
        f"{package_name(R_PACKAGE)}` from the first one, then {misses} absent names:",
        "",
        "| R | add_repo ms per repository (mean) | first 10 add_repo ms each | last 10 "
        "add_repo ms each | import ms | µs per absent name | process ms | CPU ms | RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, samples in sorted(r_rows.items()):
        label = "0 (no secure_import; local .pyc)" if r == 0 else str(r)
        lines.append(
            f"| {label} | {_ms([x.extra['add'] for x in samples]) if r else ''} | "
            f"{_ms([x.extra['first'] for x in samples]) if r else ''} | "
            f"{_ms([x.extra['last'] for x in samples]) if r else ''} | "
            f"{_ms([x.imported for x in samples])} | "
            f"{med(x.extra['miss'] for x in samples) * 1e6:.1f} | "
            f"{_ms([x.wall for x in samples])} | {_ms([x.cpu for x in samples])} | "
            f"{med(x.hwm_kib for x in samples) / 1024:.1f} |"
        )
    lines += ["", "## Targets", ""] + [f"- {v}" for v in verdicts(n_rows, r_rows, sizes)]
    return "\n".join(lines) + "\n"


def verdicts(
    n_rows: dict[tuple[str, int], list[Run]], r_rows: dict[int, list[Run]], sizes: list[int]
) -> list[str]:
    out = []
    rs = sorted(r for r in r_rows if r)
    if len(rs) >= 2:
        lo, hi = rs[0], rs[-1]
        add = {r: med(x.extra["add"] for x in r_rows[r]) for r in rs}
        # Paired inside one process: the last add_repo calls against the first.
        growth = med(x.extra["last"] / x.extra["first"] for x in r_rows[hi])
        miss = {r: med(x.extra["miss"] for x in r_rows[r]) for r in rs}
        # "Flat": within 1.5x from the fewest to the most repositories (noise on
        # a shared machine is ~20-30 % between processes).
        ok_add = add[hi] <= 1.5 * add[lo] and growth <= 1.5
        ok_miss = miss[hi] <= 1.5 * miss[lo]
        out.append(
            f"{'MET' if ok_add else 'MISSED'} add_repo's cost per repository flat in R: "
            "mean per repository "
            + ", ".join(f"R={r}: {add[r] * 1000:.2f} ms" for r in rs)
            + f"; at R={hi} the last 10 calls cost {growth:.1f}x the first 10 (same process)"
        )
        floor = f" (without secure_import: {med(x.extra['miss'] for x in r_rows[0]) * 1e6:.1f} µs)"
        out.append(
            f"{'MET' if ok_miss else 'MISSED'} cost per name the finder does not serve flat "
            "in R: "
            + ", ".join(f"R={r}: {miss[r] * 1e6:.1f} µs" for r in rs)
            + (floor if 0 in r_rows else "")
        )
    big = [n for n in sizes if n >= 200]
    if len(big) >= 2 and ("si-cold", big[-1]) in n_rows:
        a, b = big[0], big[-1]

        def slope(v: str) -> float:
            return (
                med(x.imported for x in n_rows[(v, b)]) - med(x.imported for x in n_rows[(v, a)])
            ) / (b - a)

        out.append(
            f"INFO cost per module from N={a} to N={b}: local {slope('local') * 1000:.2f} ms, "
            f"cold {slope('si-cold') * 1000:.2f} ms ({slope('si-cold') / slope('local'):.1f}x "
            f"local), warm offline {slope('si-offline') * 1000:.2f} ms "
            f"({slope('si-offline') / slope('local'):.2f}x local)"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI: N in {1,10}, R in {1,3}, 1 run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50, 200, 1000]
    )
    parser.add_argument(
        "--repos", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100]
    )
    parser.add_argument("--misses", type=int, default=MISSES)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python bench/scaling.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.quick:
        args.runs, args.sizes, args.repos, args.misses = 1, [1, 10], [1, 3], 100
    elif args.out is None:
        args.out = HERE / "results" / "scaling.md"
    work = Path(tempfile.mkdtemp(prefix="si-bench-scale-"))
    os.chmod(work, 0o700)
    bench = None
    try:
        bench = Scaling(work, args.sizes, args.repos)
        n_rows = bench.n_table(args.runs)
        r_rows = bench.r_table(args.runs, args.misses)
        text = render(n_rows, r_rows, args.sizes, command.strip(), args.runs, args.misses)
    finally:
        if bench is not None:
            bench.server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(file=sys.stderr)
    if args.quick:
        # Timings from a quick run mean nothing: no verdicts, only that it ran.
        print("bench/scaling.py --quick: harness checks passed")
    else:
        write_report(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
