"""A real web server next to our own, and whether HTTP/2 helps.

Usage (from the repository root; needs nginx, ``apt-get install nginx-light``)::

    python bench/servers.py --runs 10   # writes bench/results/servers.md; the first
                                        # run installs h2 into bench/.venv-h2lib
    python bench/servers.py --quick     # CI: N=10, 1 run, HTTP/1.1 rows only

``benchpkg<N>`` (N=200) is signed once and laid out twice under one root:
``bundled/`` (the repository as ``sign`` writes it) and ``perfile/`` (the
same without its bundles, so the client falls back to one request per file).
The root is served by nginx (``tests/nginxrig.py``: Debian nginx-light, TLS
from a throwaway CA, ``http2`` on the listener) and by our ``BenchServer``.
No delay is injected: nginx cannot add one, so both servers run at loopback
speed and the rows show the servers' and the client's own costs.

HTTP/2: secure_import's client is ``httpx.Client(http2=False)``.  The h2
rows run the unchanged import path in a child whose prelude puts a separate
directory holding ``h2`` (and its ``hpack``/``hyperframe``) on ``sys.path`` and
replaces ``httpx.Client`` with a subclass that forces ``http2=True``, which
is what adopting the ``h2`` extra would do; nginx's access log proves which
protocol each request used.  The HTTP/1.1 rows run the same prelude without
``h2`` (httpx imported in the prelude in both), so the difference is the
protocol plus h2's own import.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    run,
    si_env,
    si_program,
)
from genpkg import expected_check, generate, package_name  # noqa: E402
from server import BenchServer  # noqa: E402

from secure_import.config import BUNDLE_DIR  # noqa: E402
from secure_import.publish.sign import publish  # noqa: E402
from secure_import.store.keyfiles import generate_keypair, load_private_key_file  # noqa: E402
from tests.httpsrig import TLSServerFactory  # noqa: E402
from tests.nginxrig import NginxServer, nginx_available  # noqa: E402

H2_LIB = HERE / ".venv-h2lib"
H2_REQUIREMENT = "h2>=4,<5"


def h2_lib(install: bool) -> Path | None:
    """A directory holding h2, kept out of the benchmark's own environment
    (with h2 importable, httpcore would load it in every other row too)."""
    if (H2_LIB / "h2").is_dir():
        return H2_LIB
    if not install:
        return None
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(H2_LIB),
            H2_REQUIREMENT,
        ],
        check=True,
    )
    return H2_LIB


def prelude(h2: Path | None) -> str:
    """httpx imported first in every row; with ``h2``, HTTP/2 forced on."""
    if h2 is None:
        return "import httpx as _httpx"
    return f"""import sys as _s; _s.path.insert(0, {str(h2)!r})
import httpx as _httpx
class _Http2Client(_httpx.Client):
    def __init__(self, *a, **k):
        k["http2"] = True
        super().__init__(*a, **k)
_httpx.Client = _Http2Client"""


@dataclass
class Row:
    server: str
    layout: str
    protocol: str
    state: str
    samples: list[Run] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    body: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    #: The round each sample belongs to (pairs are formed by round).
    rounds: list[int] = field(default_factory=list)

    def by_round(self) -> dict[int, Run]:
        return dict(zip(self.rounds, self.samples, strict=True))

    @property
    def label(self) -> str:
        return f"{self.server}, {self.layout}, {self.protocol}, {self.state}"


class Servers:
    def __init__(self, work: Path, n: int, h2: Path | None) -> None:
        self.work, self.n, self.h2 = work, n, h2
        src = work / "src"
        generate(src, n)
        key, pub = generate_keypair("bench", work / "keys")
        self.pub = str(pub)
        root = work / "root"
        publish(src, root / "bundled", private_keys=[load_private_key_file(key)])
        shutil.copytree(root / "bundled", root / "perfile")
        shutil.rmtree(root / "perfile" / BUNDLE_DIR)
        self.ours = BenchServer(root, work)
        rig = TLSServerFactory(self.ours.ca, self.ours.ca_path)
        self.nginx = NginxServer(root, work / "nginx", rig)
        self.nginx.start()
        self.ca = str(self.ours.ca_path)
        self.python = str(consumer_python(work))
        self.warm: dict[tuple[str, str], Path] = {}

    def url(self, server: str, layout: str) -> str:
        base = self.nginx.url if server == "nginx" else self.ours.url
        return f"{base}{layout}/"

    def once(self, row: Row, round_: int) -> None:
        name = package_name(self.n)
        repo = SiRepo(self.url(row.server, row.layout), self.pub, self.ca)
        h2 = self.h2 if row.protocol == "HTTP/2" else None
        program = si_program(
            [repo],
            [name],
            check=f"assert {name}.check() == {expected_check(self.n)}",
            prelude=prelude(h2),
        )
        key = (row.server, row.layout)
        if row.state == "cold":
            dirs = fresh_dir(self.work / "si", "cold")
        else:
            if key not in self.warm:
                self.warm[key] = fresh_dir(self.work / "si", "warm")
                run([self.python, "-I", "-c", program], env=si_env(self.warm[key]))
            dirs = self.warm[key]
        self.ours.reset()
        self.nginx.clear_log()
        try:
            result = run([self.python, "-I", "-c", program], env=si_env(dirs))
        except SystemExit as exc:
            if row.protocol != "HTTP/2":
                raise
            # httpcore's HTTP/2 connection shared by the fallback's threads can
            # fail (a KeyError in _response_closed, encode/httpcore#1062): a
            # finding about HTTP/2, recorded, not a harness failure.
            lines = [x for x in str(exc).splitlines() if x.strip()]
            row.failures.append(lines[-1][:200] if lines else "failed")
            if row.state == "cold":
                shutil.rmtree(dirs, ignore_errors=True)
            return
        if row.server == "nginx":
            records = self.nginx.requests()
            requests, body = len(records), sum(r.bytes for r in records)
            row.seen |= {r.protocol for r in records}
        else:
            tally = self.ours.tally()
            requests, body = tally.requests, tally.body_bytes
            row.seen.add("HTTP/1.1")
        if row.state == "cold":
            shutil.rmtree(dirs, ignore_errors=True)
        row.samples.append(result)
        row.rounds.append(round_)
        row.requests.append(requests)
        row.body.append(body)
        self.check(row, requests)

    def check(self, row: Row, requests: int) -> None:
        if row.state == "warm":
            assert requests == 1, f"{row.label}: {requests} requests, expected the pointer only"
        elif row.layout == "bundled":
            # the manifest, then the bundle(s): never one request per module
            assert 2 <= requests <= 2 + self.n // 10, f"{row.label}: {requests} requests"
        else:
            assert requests > self.n, f"{row.label}: {requests} requests for {self.n} files"
        if row.server == "nginx":
            want = "HTTP/2.0" if row.protocol == "HTTP/2" else "HTTP/1.1"
            assert row.seen == {want}, f"{row.label}: nginx saw {row.seen}"

    def stop(self) -> None:
        self.nginx.stop()
        self.ours.stop()


def rows_for(h2: bool) -> list[Row]:
    protocols = ["HTTP/1.1", "HTTP/2"] if h2 else ["HTTP/1.1"]
    rows = [Row("our server", "bundled", "HTTP/1.1", s) for s in ("cold", "warm")]
    rows += [Row("our server", "perfile", "HTTP/1.1", "cold")]
    for protocol in protocols:
        rows += [Row("nginx", "bundled", protocol, s) for s in ("cold", "warm")]
        rows += [Row("nginx", "perfile", protocol, "cold")]
    return rows


def render(rows: list[Row], command: str, runs: int, n: int) -> tuple[str, list[str]]:
    lines = [
        "# A real web server (nginx) next to ours, and HTTP/2",
        "",
        f"Command: `{command}`",
        "",
        machine_note(runs),
        "",
        f"`{package_name(n)}` ({n} modules), loopback HTTPS, no injected delay. *bundled*: "
        "the repository as `sign` writes it (manifest + one bundle); *perfile*: the same "
        "without bundles (the client falls back to one request per file after a 404). "
        "*process*: whole process timed by the parent; *CPU*: its user + system time; "
        "*import*: timed inside the child. nginx's protocol per request from its access log.",
        "",
        "| server, layout, protocol, state | process ms | CPU ms | import ms | requests | "
        "KiB | RSS MiB | protocol seen | failed runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]

    def m(values: Sequence[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f}"

    for row in rows:
        lines.append(
            f"| {row.label} | {m([s.wall for s in row.samples])} | "
            f"{m([s.cpu for s in row.samples])} | {m([s.imported for s in row.samples])} | "
            f"{max(row.requests)} | {statistics.median(row.body) / 1024:.0f} | "
            f"{statistics.median(s.hwm_kib for s in row.samples) / 1024:.1f} | "
            f"{', '.join(sorted(row.seen))} | {len(row.failures)} |"
        )
    decision = h2_decision(rows)
    lines += ["", "## HTTP/2", ""] + [f"- {d}" for d in decision]
    errors = sorted({f for row in rows for f in row.failures})
    if errors:
        lines += ["", "Errors of the failed runs (last line of the child's output):", ""]
        lines += [f"- `{e}`" for e in errors]
    return "\n".join(lines) + "\n", decision


def h2_decision(rows: list[Row]) -> list[str]:
    by = {(r.server, r.layout, r.protocol, r.state): r for r in rows}
    if ("nginx", "bundled", "HTTP/2", "cold") not in by:
        return ["not measured (h2 not available: run without --quick)"]
    out = []
    helps = []
    for layout, state in (("bundled", "cold"), ("bundled", "warm"), ("perfile", "cold")):
        one = by[("nginx", layout, "HTTP/1.1", state)]
        two = by[("nginx", layout, "HTTP/2", state)]
        if not two.samples:
            helps.append(False)
            out.append(f"{layout} {state}: every HTTP/2 run failed ({len(two.failures)})")
            continue
        a_runs, b_runs = one.by_round(), two.by_round()
        pairs = [(a_runs[i], b_runs[i]) for i in sorted(a_runs.keys() & b_runs.keys())]
        paired_wall = [b.wall / a.wall for a, b in pairs]
        paired_cpu = [b.cpu / a.cpu for a, b in pairs]
        ratio = statistics.median(paired_wall)
        cpu = statistics.median(paired_cpu)
        faster = sum(1 for x in paired_wall if x < 1)
        helps.append(ratio < 0.95 and faster > len(paired_wall) * 3 / 4)
        out.append(
            f"{layout} {state}: HTTP/2 ÷ HTTP/1.1 = {ratio:.2f}x wall, {cpu:.2f}x CPU "
            f"(median of paired runs; HTTP/2 faster in {faster} of {len(paired_wall)})"
        )
    failed = sum(len(r.failures) for r in rows if r.protocol == "HTTP/2")
    runs = failed + sum(len(r.samples) for r in rows if r.protocol == "HTTP/2")
    if failed:
        out.append(f"HTTP/2 runs that failed: {failed} of {runs}")
    if failed:
        verdict = "NOT ADOPTED: HTTP/2 runs failed (reliability first, whatever the speed)"
    elif any(helps):
        verdict = "ADOPT: HTTP/2 clearly helps"
    else:
        verdict = "NOT ADOPTED: HTTP/2 does not clearly help"
    out.append(f"{verdict} (threshold: ≥5 % faster in the median and in ≥3/4 of the pairs)")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI: N=10, 1 run, HTTP/1.1 only")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python bench/servers.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if not nginx_available():
        if os.environ.get("CI"):
            raise SystemExit("nginx is required in CI (apt-get install nginx-light)")
        print("bench/servers.py: nginx is not installed, skipped (apt-get install nginx-light)")
        return 0
    if args.quick:
        args.runs, args.modules = 1, 10
    elif args.out is None:
        args.out = HERE / "results" / "servers.md"
    h2 = h2_lib(install=not args.quick)
    if args.quick:
        h2 = None  # the quick mode checks the HTTP/1.1 harness only
    work = Path(tempfile.mkdtemp(prefix="si-bench-servers-"))
    os.chmod(work, 0o700)
    bench = None
    rows = rows_for(h2 is not None)
    if args.quick:
        rows = [r for r in rows if r.server == "nginx" or r.state == "cold"][1:]
    try:
        bench = Servers(work, args.modules, h2)
        for i in range(args.runs):
            shift = i % len(rows)
            for row in rows[shift:] + rows[:shift]:
                bench.once(row, i)
                print(".", end="", file=sys.stderr, flush=True)
        text, _ = render(rows, command.strip(), args.runs, args.modules)
    finally:
        if bench is not None:
            bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(file=sys.stderr)
    if args.quick:
        print("bench/servers.py --quick: harness checks passed")
    else:
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
