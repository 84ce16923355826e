"""secure_import against what a user would pick instead, in whole processes.

One :class:`Scenario` is a package served two ways from loopback HTTPS with
the same injected delay per request: as a wheel from a PEP 503 index (for
``pip install`` and ``uv pip install``) and as a signed repository (for
secure_import).  :func:`measure` runs every variant in fresh processes, run by
run in rotating order (paired), and returns the samples:

- ``pip`` / ``uv``: install into a fresh virtual environment (a copy of a
  template made before the timer starts: environment creation is not timed,
  :func:`venv_costs` reports it separately), then the first import in a new
  process of that environment; both processes are timed, their sum is the row;
- ``si-cold``: ``import secure_import``, ``add_repo``, the import, in one
  process with an empty cache, state and log;
- ``installed``: the import in a process of an environment where the package
  is already installed (what every later start of the pip or uv user costs);
- ``si-warm``: a filled cache, freshness checked (one pointer request);
- ``si-offline``: a filled cache, ``offline=True``;
- ``bare``: ``python -I -c pass``, the interpreter's own start.

secure_import's rows run in a clean environment holding its runtime
dependencies only (``common.consumer_python``), like the pip and uv rows.

Requests and body bytes are counted by the servers; the cache's size (bytes,
files) after each cold run is measured on disk.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    Run,
    SiRepo,
    clean_env,
    consumer_python,
    fresh_dir,
    plain_program,
    run,
    si_env,
    si_program,
    tree_size,
)
from server import BenchServer

__all__ = ["VARIANTS", "Sample", "Scenario", "measure", "uv_binary", "venv_costs", "venv_template"]

VARIANTS = ("pip", "uv", "si-cold", "installed", "si-warm", "si-offline", "bare")


def uv_binary() -> str:
    """The uv executable of the ``bench`` extra (PyPI package ``uv``)."""
    try:
        import uv  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit("uv is not installed: pip install -e '.[bench]'") from exc
    return str(uv.find_uv_bin())


def venv_template(work: Path) -> Path:
    """A virtual environment with pip, copied for every pip and uv run.

    pip is copied from the benchmark's own environment rather than installed
    by ``ensurepip`` (which costs seconds on this machine and would make the
    quick mode slow): the same pip version either way, offline.
    """
    template = work / "venv-template"
    if template.exists():
        return template
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(template)], check=True, env=clean_env()
    )
    import pip

    source = Path(pip.__file__).parent
    [site] = (template / "lib").glob("python*/site-packages")
    # __pycache__ included (copy2 keeps mtimes, so the .pyc stay valid): pip pays
    # no compilation in the timed runs, as after ensurepip.
    shutil.copytree(source, site / "pip")
    for info in source.parent.glob("pip-*.dist-info"):
        shutil.copytree(info, site / info.name)
    return template


def fresh_venv(template: Path, parent: Path, label: str) -> Path:
    target = fresh_dir(parent, label)
    target.rmdir()
    shutil.copytree(template, target, symlinks=True)
    return target


def venv_costs(work: Path, runs: int = 3) -> dict[str, list[float]]:
    """What creating the environment costs (not in the rows' times)."""
    out: dict[str, list[float]] = {"python -m venv": [], "uv venv": []}
    for i in range(runs):
        out["python -m venv"].append(
            run([sys.executable, "-m", "venv", str(work / f"vc-{i}")]).wall
        )
        out["uv venv"].append(
            run([uv_binary(), "venv", "-q", "--python", sys.executable, str(work / f"vu-{i}")]).wall
        )
    return out


@dataclass
class Sample:
    """One run of one variant."""

    total: float
    cpu: float = 0.0
    install: float = 0.0
    first_import: float = 0.0
    imported: float = 0.0
    hwm_kib: int = 0
    requests: int = 0
    body_bytes: int = 0
    cache_bytes: int = 0
    cache_files: int = 0


@dataclass
class Scenario:
    """A package served as wheels (index) and as signed repositories."""

    name: str
    work: Path
    index: BenchServer
    repos: list[BenchServer]
    si_repos: list[SiRepo]
    requirements: list[str]
    imports: list[str]
    check: str = ""
    wheel_bytes: int = 0
    template: Path | None = None
    installed: Path | None = None
    #: The interpreter secure_import's rows run in (``common.consumer_python``).
    consumer: Path = Path(sys.executable)
    #: A sentence for the report (what was signed, what was left out).
    note: str = ""
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def ca(self) -> str:
        return str(self.index.ca_path)

    def servers(self) -> list[BenchServer]:
        return [self.index, *self.repos]

    def reset(self) -> None:
        for server in self.servers():
            server.reset()

    def tally(self) -> tuple[int, int]:
        tallies = [server.tally() for server in self.servers()]
        return sum(t.requests for t in tallies), sum(t.body_bytes for t in tallies)

    # -- the variants -------------------------------------------------------------

    def pip_install(self, venv: Path) -> Run:
        return run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-cache-dir",
                "--index-url",
                self.index.url + "simple/",
                "--cert",
                self.ca,
                *self.requirements,
            ]
        )

    def uv_install(self, venv: Path) -> Run:
        cache = fresh_dir(self.work / "uv-cache", "c")
        return run(
            [
                uv_binary(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "--index-url",
                self.index.url + "simple/",
                *self.requirements,
            ],
            env=clean_env({"SSL_CERT_FILE": self.ca, "UV_CACHE_DIR": str(cache)}),
        )

    def import_in(self, venv: Path) -> Run:
        program = plain_program(self.imports, self.check)
        return run([str(venv / "bin" / "python"), "-I", "-c", program])

    def si(self, dirs: Path, *, offline: bool = False) -> Run:
        program = si_program(self.si_repos, self.imports, check=self.check, offline=offline)
        return run([str(self.consumer), "-I", "-c", program], env=si_env(dirs))

    def prepare(self) -> Path:
        """The template environment and one with the package installed (by pip)."""
        self.template = venv_template(self.work)
        self.consumer = consumer_python(self.work)
        self.installed = fresh_venv(self.template, self.work / "venvs", "installed")
        self.pip_install(self.installed)
        self.import_in(self.installed)  # writes the installed package's .pyc
        warm = fresh_dir(self.work / "si", "warm")
        self.si(warm)
        self.si(warm)  # bytecode and page cache settle
        return warm

    def once(self, variant: str, warm: Path) -> Sample:
        assert self.template is not None and self.installed is not None
        venv = None
        if variant in ("pip", "uv"):
            venv = fresh_venv(self.template, self.work / "venvs", variant)
        dirs = fresh_dir(self.work / "si", "cold") if variant == "si-cold" else warm
        self.reset()
        if variant in ("pip", "uv"):
            assert venv is not None
            inst = self.pip_install(venv) if variant == "pip" else self.uv_install(venv)
            requests, body = self.tally()
            first = self.import_in(venv)
            shutil.rmtree(venv, ignore_errors=True)
            return Sample(
                total=inst.wall + first.wall,
                cpu=inst.cpu + first.cpu,
                install=inst.wall,
                first_import=first.wall,
                imported=first.imported,
                hwm_kib=first.hwm_kib,
                requests=requests,
                body_bytes=body,
            )
        if variant == "installed":
            r = self.import_in(self.installed)
        elif variant == "bare":
            r = run([str(self.consumer), "-I", "-c", plain_program([])])
        else:
            r = self.si(dirs, offline=variant == "si-offline")
        requests, body = self.tally()
        sample = Sample(
            total=r.wall,
            cpu=r.cpu,
            imported=r.imported,
            hwm_kib=r.hwm_kib,
            requests=requests,
            body_bytes=body,
        )
        if variant == "si-cold":
            sample.cache_bytes, sample.cache_files = tree_size(dirs / "cache")
            shutil.rmtree(dirs, ignore_errors=True)
        self.check_sample(variant, sample)
        return sample

    def check_sample(self, variant: str, s: Sample) -> None:
        """What must hold whatever the timings (the quick mode's real check)."""
        if variant in ("installed", "bare", "si-offline"):
            assert s.requests == 0, f"{self.name} {variant} made {s.requests} requests"
        if variant == "si-warm":
            assert s.requests == len(self.si_repos_all()), (
                f"{self.name} warm: {s.requests} requests, expected one pointer per repository"
            )
        if variant == "si-cold":
            assert s.requests >= 2 and s.cache_files > 0, (self.name, s)

    def si_repos_all(self) -> list[BenchServer]:
        """Every repository a consumer ends up using (declared ones included)."""
        return self.repos


def measure(scenario: Scenario, runs: int, variants: Sequence[str] = VARIANTS) -> None:
    """Fill ``scenario.samples``: ``runs`` rounds, variants in rotating order."""
    warm = scenario.prepare()
    scenario.samples = {v: [] for v in variants}
    order = list(variants)
    for i in range(runs):
        shift = i % len(order)
        for variant in order[shift:] + order[:shift]:
            scenario.samples[variant].append(scenario.once(variant, warm))
            print(".", end="", file=sys.stderr, flush=True)
    print(f" {scenario.name} done", file=sys.stderr, flush=True)
