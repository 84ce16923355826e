"""A real large package: sympy with mpmath, against pip and uv, in whole processes.

Usage (from the repository root, in an environment with ``.[test,bench]``)::

    python bench/bigpkg.py --runs 5     # downloads the two wheels from the package
                                        # index, writes bench/results/sympy.md
    python bench/bigpkg.py --quick      # CI: a generated two-package stand-in, offline

The wheels (``pip download --no-deps --only-binary :all:``) go to a temporary
directory and are deleted afterwards; nothing downloaded is kept or committed.
Each wheel's contents (the import package and its ``.dist-info``) are signed
by ``secure-import sign`` into its own repository with its own publisher key,
on its own loopback HTTPS server: sympy's manifest declares mpmath's
repository and key (``--requires``), and the consumer adds sympy's repository
with ``trust_dependencies=True``, so mpmath comes from the second repository.
Names sympy imports only optionally (numpy, gmpy2, ...; found by the
project's import scan) are declared local with ``--local-import``.  The same
two wheels are served from a PEP 503 index for ``pip install sympy`` and
``uv pip install sympy``.

sympy 1.14 declares ``mpmath<1.4``, so pip and uv install mpmath 1.3.0 and the
signed repositories hold the same version (``--mpmath`` to change both).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(HERE))

import trustme  # noqa: E402
from alternatives import report  # noqa: E402
from common import SiRepo, write_report  # noqa: E402
from contenders import VARIANTS, Scenario, measure  # noqa: E402
from genpkg import expected_check, generate, package_name  # noqa: E402
from pkgindex import build_wheel, write_index  # noqa: E402
from server import BenchServer  # noqa: E402

from secure_import.publish.imports import scan_imports  # noqa: E402

QUICK_VARIANTS = ("uv", "si-cold", "installed", "si-warm", "si-offline")
SYMPY_CHECK = "assert str(sympy.expand((sympy.Symbol('x') + 1) ** 2)) == 'x**2 + 2*x + 1'"


def download(requirements: list[str], into: Path) -> list[Path]:
    """The wheels, from the package index this machine is configured for."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            *requirements,
            "-d",
            str(into),
        ],
        check=True,
    )
    return sorted(into.glob("*.whl"))


def unpack(wheel: Path, tree: Path) -> tuple[Path, list[str]]:
    """The wheel's import packages and .dist-info (no scripts, no .data).

    ``.py`` files whose path is not made of identifiers (sympy ships
    ``parsing/autolev/test-examples/pydy-example-repo/*.py``) cannot be
    imported by anyone and ``sign`` refuses them: they are left out and
    returned, so the report can say so.
    """
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tree)
    for path in list(tree.iterdir()):
        if path.suffix == ".data" or (path.is_file() and path.suffix == ".py"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    left_out = []
    for path in sorted(tree.rglob("*.py")):
        rel = path.relative_to(tree).with_suffix("")
        if not all(part.isidentifier() for part in rel.parts):
            left_out.append(str(path.relative_to(tree)))
            path.unlink()
    return tree, left_out


def optional_imports(tree: Path, declared: list[str]) -> list[str]:
    """Names the code imports that the tree does not provide and no repository
    declared: the consumer's own environment (or nothing) provides them."""
    provides = [p.name for p in tree.iterdir() if (p / "__init__.py").exists()]
    files = {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*.py")}
    undeclared, _optional = scan_imports(files).outside([*provides, *declared])
    return sorted(undeclared)


def keygen(name: str, keys: Path) -> tuple[Path, Path]:
    subprocess.run(
        [sys.executable, "-m", "secure_import", "keygen", name, "--dir", str(keys), "-q"],
        check=True,
        capture_output=True,
        cwd=PROJECT,
    )
    return keys / f"{name}.key", keys / f"{name}.pub"


def sign(tree: Path, out: Path, key: Path, extra: list[str]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "secure_import",
            "sign",
            str(tree),
            "--key",
            str(key),
            "--out",
            str(out),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"secure-import sign {tree} failed:\n{proc.stderr[-3000:]}")


def two_repositories(
    work: Path,
    name: str,
    main: tuple[str, Path],
    dep: tuple[str, Path],
    wheels: list[Path],
    *,
    imports: list[str],
    check: str,
    delay: float,
    dep_range: str | None = None,
) -> Scenario:
    """``main`` needs ``dep``: each signed into its own repository and server.

    ``dep_range``: the dependency's manifest versions, for a tree whose
    ``.dist-info`` gives no ``Requires-Dist`` range (sympy's does).
    """
    (main_top, main_tree), (dep_top, dep_tree) = main, dep
    ca = trustme.CA()
    write_index(work / "index", wheels)
    index = BenchServer(work / "index", work, delay=delay, index_pages=True, ca=ca)
    keys = work / "keys"
    dep_key, dep_pub = keygen(f"{dep_top}-publisher", keys)
    main_key, main_pub = keygen(f"{main_top}-publisher", keys)
    dep_out, main_out = work / "repo-dep", work / "repo-main"
    dep_out.mkdir()
    main_out.mkdir()
    dep_server = BenchServer(dep_out, work, delay=delay, ca=ca)
    main_server = BenchServer(main_out, work, delay=delay, ca=ca)
    local = [a for n in optional_imports(dep_tree, []) for a in ("--local-import", n)]
    sign(dep_tree, dep_out, dep_key, local)
    requires = work / "requires.toml"
    requires.write_text(
        f"[requires.{dep_top}]\nrepository = {json.dumps(dep_server.url)}\n"
        f"keys = [{json.dumps(str(dep_pub))}]\n"
        + ("" if dep_range is None else f"manifest_versions = {json.dumps(dep_range)}\n")
    )
    local = [a for n in optional_imports(main_tree, [dep_top]) for a in ("--local-import", n)]
    sign(main_tree, main_out, main_key, ["--requires", str(requires), *local])
    return Scenario(
        name=name,
        work=work,
        index=index,
        repos=[main_server, dep_server],
        si_repos=[
            SiRepo(
                main_server.url, str(main_pub), str(main_server.ca_path), trust_dependencies=True
            )
        ],
        requirements=[main_top],
        imports=imports,
        check=check,
        wheel_bytes=sum(w.stat().st_size for w in wheels),
    )


def sympy_scenario(work: Path, sympy: str, mpmath: str, delay: float) -> Scenario:
    wheels = download([f"sympy=={sympy}", f"mpmath=={mpmath}"], work / "wheels")
    [sympy_whl] = [w for w in wheels if w.name.startswith("sympy-")]
    [mpmath_whl] = [w for w in wheels if w.name.startswith("mpmath-")]
    sympy_tree, left_sympy = unpack(sympy_whl, work / "trees" / "sympy")
    mpmath_tree, left_mpmath = unpack(mpmath_whl, work / "trees" / "mpmath")
    scenario = two_repositories(
        work,
        f"sympy {sympy} + mpmath {mpmath}",
        ("sympy", sympy_tree),
        ("mpmath", mpmath_tree),
        wheels,
        imports=["sympy"],
        check=SYMPY_CHECK,
        delay=delay,
    )
    left = left_sympy + left_mpmath
    scenario.note = (
        f"Signed: every file of both wheels' import packages and .dist-info except "
        f"{len(left)} `.py` files whose paths are not importable names (e.g. `{left[0]}`), "
        "which `sign` refuses and nothing can import."
        if left
        else "Signed: every file of both wheels' import packages and .dist-info."
    )
    return scenario


def standin_scenario(work: Path) -> Scenario:
    """Offline stand-in for the quick mode: ``bigquick`` needs ``benchpkg10``."""
    dep_tree, main_tree = work / "trees" / "dep", work / "trees" / "main"
    generate(dep_tree, 10)
    pkg = main_tree / "bigquick"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        f"import {package_name(10)}\n\n\ndef check():\n    return {package_name(10)}.check()\n"
    )
    wheels = [
        build_wheel(dep_tree / package_name(10), work / "wheels"),
        build_wheel(pkg, work / "wheels", requires=[package_name(10)]),
    ]
    return two_repositories(
        work,
        "bigquick + benchpkg10 (quick stand-in)",
        ("bigquick", main_tree),
        (package_name(10), dep_tree),
        wheels,
        imports=["bigquick"],
        check=f"assert bigquick.check() == {expected_check(10)}",
        delay=0.0,
        dep_range=">=1",
    )


NOTES = (
    "Two repositories (sympy's declares mpmath's; the consumer adds sympy's with "
    "`trust_dependencies=True`), two publishers, two loopback servers; pip and uv "
    "install both wheels from one PEP 503 index. *whole process(es)*: wall time seen by "
    "the parent, interpreter start included; for pip and uv the install process plus "
    "the first import's process (fresh copy of a template virtual environment each run, "
    "not timed); pip with `--no-cache-dir`, uv with an empty cache. *peak RSS*: the "
    "importing process's VmHWM. *KiB on the wire*: response bodies counted by the "
    "servers. *cache*: secure_import's cache directory after a cold run. The import "
    "runs `import sympy` and one small expansion."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI: offline stand-in, 1 run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--sympy", default="1.14.0")
    parser.add_argument("--mpmath", default="1.3.0")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python bench/bigpkg.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.quick:
        args.runs, args.delay_ms = 1, 0.0
    elif args.out is None:
        args.out = HERE / "results" / "sympy.md"
    work = Path(tempfile.mkdtemp(prefix="si-bench-big-"))
    os.chmod(work, 0o700)
    scenario = None
    try:
        if args.quick:
            scenario = standin_scenario(work)
        else:
            scenario = sympy_scenario(work, args.sympy, args.mpmath, args.delay_ms / 1000)
        # The quick stand-in checks the two-repository plumbing; pip's row is
        # the synthetic quick run's (alternatives.py), not repeated here.
        measure(scenario, args.runs, QUICK_VARIANTS if args.quick else VARIANTS)
        text = report(
            [scenario],
            "A real large package: sympy + mpmath",
            command.strip(),
            args.runs,
            args.delay_ms,
            NOTES,
        )
    finally:
        if scenario is not None:
            for server in scenario.servers():
                server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        # Timings from a quick run mean nothing: no verdicts, only that it ran.
        print("bench/bigpkg.py --quick: harness checks passed")
    else:
        write_report(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
