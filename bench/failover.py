"""What a mirror failover costs: an origin refused, failing or silent; nginx as the mirror.

Usage (from the repository root; needs nginx, ``apt-get install nginx-light``)::

    python bench/failover.py --runs 5     # writes bench/results/failover.md
    python bench/failover.py --quick      # 1 run, N=20: the harness works

``benchpkg<N>`` (N=200) is signed once and served by a real nginx
(``tests/nginxrig.py``).  Each row is a fresh consumer process that adds the
repository and imports the package:

- *origin up*: nginx is the repository's URL (no mirror): the baseline;
- *origin refused*: the URL is a loopback port nobody listens on (connection
  refused at once), nginx is the mirror;
- *origin 503*: the URL is our server answering 503 to everything, nginx is
  the mirror;
- *origin silent*: the URL is a socket that accepts TCP but never answers
  (a hung host or a black-holed load balancer): the first request waits
  ``Limits.failover_after`` (3 s by default; the full read bound,
  ``throughput_window``, 10 s, applies only to the last source) before
  failing over; the last row lowers it to 1 s.

Every process pays its own failover once: the "asked last for 30 s" memory
lives in the process (``transport/mirrors.DOWN_FOR``).  Cold: empty cache
(manifest + one bundle); warm: a cache filled by an earlier process (one
pointer request).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(HERE))

from common import Run, consumer_python, fresh_dir, machine_note, run, si_env, si_program  # noqa: E402
from genpkg import expected_check, generate, package_name  # noqa: E402
from server import BenchServer  # noqa: E402

from secure_import.publish.serve import RepoServer, Response  # noqa: E402
from secure_import.publish.sign import publish  # noqa: E402
from secure_import.store.keyfiles import generate_keypair, load_private_key_file  # noqa: E402
from tests.httpsrig import TLSServerFactory  # noqa: E402
from tests.nginxrig import NginxServer, nginx_available  # noqa: E402


@dataclass
class Variant:
    label: str
    origin: str  # "up" | "refused" | "503" | "silent"
    failover_after: float | None = None  # Limits.failover_after override (seconds)


VARIANTS = [
    Variant("origin up (nginx, no mirror)", "up"),
    Variant("origin refused, nginx mirror", "refused"),
    Variant("origin 503, nginx mirror", "503"),
    Variant("origin silent, nginx mirror", "silent"),
    Variant("origin silent, nginx mirror, failover_after = 1 s", "silent", 1.0),
]


@dataclass
class Row:
    variant: Variant
    state: str
    samples: list[Run] = field(default_factory=list)
    mirror_requests: list[int] = field(default_factory=list)


class Bench:
    def __init__(self, work: Path, n: int) -> None:
        self.work, self.n = work, n
        src = work / "src"
        generate(src, n)
        key, pub = generate_keypair("bench", work / "keys")
        self.pub = str(pub)
        root = work / "root"
        publish(src, root, private_keys=[load_private_key_file(key)])
        # BenchServer only provides the CA here; nginx serves the repository.
        self.ca_server = BenchServer(root, work)
        rig = TLSServerFactory(self.ca_server.ca, self.ca_server.ca_path)
        self.nginx = NginxServer(root, work / "nginx", rig)
        self.nginx.start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca_server.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self.failing = RepoServer(
            root, ssl_context=ctx, handler_hook=lambda request: Response(status=503)
        )
        self.failing.start()
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(64)  # never accepted: the kernel completes TCP, nobody speaks TLS
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            refused_port = probe.getsockname()[1]
        self.origins = {
            "refused": f"https://127.0.0.1:{refused_port}/",
            "503": self.failing.url,
            "silent": f"https://127.0.0.1:{self.silent.getsockname()[1]}/",
        }
        self.python = str(consumer_python(work))
        self.warm: dict[str, Path] = {}

    def program(self, variant: Variant) -> str:
        name = package_name(self.n)
        base = si_program([], [name], check=f"assert {name}.check() == {expected_check(self.n)}")
        if variant.origin == "up":
            url, mirrors = self.nginx.url, []
        else:
            url, mirrors = self.origins[variant.origin], [self.nginx.url]
        limits = (
            ""
            if variant.failover_after is None
            else f", limits=__import__('secure_import.config').config.Limits("
            f"failover_after={variant.failover_after!r})"
        )
        add = (
            f"_si.add_repo({url!r}, keys=[{self.pub!r}], "
            f"ca_bundle={str(self.ca_server.ca_path)!r}, mirrors={mirrors!r}{limits})\n"
        )
        return base.replace("_t0 = _time.perf_counter()", add + "_t0 = _time.perf_counter()", 1)

    def once(self, row: Row) -> None:
        program = self.program(row.variant)
        if row.state == "cold":
            dirs = fresh_dir(self.work / "si", "cold")
        else:
            key = row.variant.label
            if key not in self.warm:
                self.warm[key] = fresh_dir(self.work / "si", "warm")
                run([self.python, "-I", "-c", program], env=si_env(self.warm[key]))
            dirs = self.warm[key]
        self.nginx.clear_log()
        result = run([self.python, "-I", "-c", program], env=si_env(dirs))
        if row.state == "cold":
            shutil.rmtree(dirs, ignore_errors=True)
        row.samples.append(result)
        row.mirror_requests.append(len(self.nginx.requests()))

    def close(self) -> None:
        self.nginx.stop()
        self.failing.stop()
        self.silent.close()
        self.ca_server.stop()


def _ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1000:.1f} "
        f"({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"
    )


def report(rows: list[Row], n: int, runs: int, command: str) -> str:
    lines = [
        "# Mirror failover: what an origin that is refused, failing or silent costs",
        "",
        f"Command: `{command}`",
        "",
        machine_note(runs),
        "",
        f"`benchpkg{n}` ({n} modules, bundled), loopback HTTPS, nginx (Debian nginx-light) "
        "serving the repository. *process*: whole consumer process, timed by the parent; "
        "*import*: the import, timed inside the child; *nginx requests*: requests the "
        "mirror (or, in the first row, the origin) answered.",
        "",
        "| origin, mirror | state | process ms | import ms | nginx requests |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.variant.label} | {row.state} | {_ms([s.wall for s in row.samples])} | "
            f"{_ms([s.imported for s in row.samples])} | "
            f"{statistics.median(row.mirror_requests):g} |"
        )
    lines += [
        "",
        "Each process pays its own failover once (the source marked down is remembered "
        "for 30 s inside the process). A refused or failing origin costs about one "
        "round trip; a silent one costs `failover_after` (3 s by default) once per "
        "process.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1 run, 20 modules")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "failover.md")
    args = parser.parse_args()
    if not nginx_available():
        print("nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    runs, n = (1, 20) if args.quick else (args.runs, args.modules)
    with tempfile.TemporaryDirectory(prefix="si-failover-") as tmp:
        bench = Bench(Path(tmp), n)
        try:
            rows = [Row(v, state) for v in VARIANTS for state in ("cold", "warm")]
            for _ in range(runs):
                for row in rows:  # interleaved: each round runs every row once
                    bench.once(row)
        finally:
            bench.close()
    command = "python bench/failover.py " + " ".join(sys.argv[1:])
    text = report(rows, n, runs, command.strip())
    if args.quick:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
