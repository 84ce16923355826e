#!/usr/bin/env python3
"""Acceptance: real PyPI libraries pass their own test suites through secure_import.

For each pinned library this script:

1. downloads the sdist (``pip download --no-deps --no-binary :all: NAME==VER``);
2. builds the importable tree (the library's modules, its data files, and a
   ``NAME-VERSION.dist-info/METADATA`` made from the sdist's ``PKG-INFO``) and
   a separate directory holding only the library's tests;
3. signs the tree with the real ``secure-import sign`` command and a
   throwaway key, and serves it over loopback HTTPS (``RepoServer`` with a
   ``devtls`` CA);
4. runs the library's test suite twice in a fresh interpreter
   (``python -S -s -P``) whose ``sys.path`` holds only the test tools and
   secure_import's own dependencies (symlinked into a private site directory):
   once with the tree on ``sys.path`` (local), once with only the signed
   repository added (remote).  The remote run asserts the library is absent
   locally before the repository is added, and asserts at the end that every
   library module in ``sys.modules`` came from the repository
   (``__spec__.origin`` under its https URL);
5. prints a markdown table and exits non-zero unless every library is at
   parity (same passed/failed/error counts) with no module loaded locally.

A library with ``dependencies`` (sympy, which needs mpmath) is served from two
repositories signed by two publishers: each dependency is signed with its own
key and served by its own server first; the library is then signed with a
declarations file (``sign --requires``: the dependency's URL and key, the
range taken from the library's own ``Requires-Dist``) and the consumer pins
only the library, with ``trust_dependencies=True``.  The remote run also
reports the audit evidence: the ``dependency`` records and how many load
records name the declaration that allowed them (``via``).  Such pairs run in
full mode only.

Usage::

    python acceptance/run.py            # all libraries (sympy + mpmath: ~10 minutes)
    python acceptance/run.py --quick    # the fastest library only (CI)

Downloads and work files go to ``acceptance/.work/`` (or ``--work DIR``).
The package index is the only network access; everything else is loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))

from secure_import.publish.devtls import make_dev_certificates, server_ssl_context  # noqa: E402
from secure_import.publish.serve import RepoServer  # noqa: E402


@dataclass
class Library:
    """One library under test and how its sdist maps to code and tests."""

    name: str
    version: str
    shape: str
    #: sdist-relative paths of the importable code (files or package dirs).
    code: list[str]
    #: sdist-relative path of the tests -> path inside the test directory.
    tests: dict[str, str]
    #: paths (inside the code) left out of the signed tree (the tests).
    exclude: list[str] = field(default_factory=list)
    #: files copied from the sdist next to the tests (data tests read by path).
    test_data: dict[str, str] = field(default_factory=dict)
    pytest_ini: str = ""
    #: top-level import names provided by the library.
    tops: list[str] = field(default_factory=list)
    #: tests that cannot pass when __file__ is a URL: node id -> reason.
    url_file_limits: dict[str, str] = field(default_factory=dict)
    #: other LIBRARIES entries served from their own repository by another
    #: publisher and declared as dependencies in this library's manifest.
    dependencies: list[str] = field(default_factory=list)
    #: names the code imports that the consumer's environment provides (or
    #: that are optional), passed to ``sign --local-import``.
    local_imports: list[str] = field(default_factory=list)
    #: directories (tree-relative globs) left out of the signed tree.
    exclude_globs: list[str] = field(default_factory=list)
    #: text replacements in the copied test files (tests that import other
    #: test modules through the package, whose tests are not in the tree).
    test_rewrites: dict[str, str] = field(default_factory=dict)
    #: only a dependency of another entry: no test run of its own.
    dependency_only: bool = False


LIBRARIES = [
    Library(
        "six",
        "1.17.0",
        "single module; installs its own meta-path importer (six.moves)",
        code=["six.py"],
        tests={"test_six.py": "test_six.py"},
        tops=["six"],
        # Python 2 only (imported on the PY2 branch): not a dependency.
        local_imports=["StringIO"],
    ),
    Library(
        "toolz",
        "1.0.0",
        "deep package with relative imports; tlz meta-path importer; pickle, inspect",
        code=["toolz", "tlz"],
        tests={"toolz/tests": "tests"},
        exclude=["toolz/tests"],
        tops=["toolz", "tlz"],
    ),
    Library(
        "pyphen",
        "0.17.2",
        "package data via importlib.resources (84 files in a data-only directory)",
        code=["pyphen"],
        tests={"tests/test_pyphen.py": "tests/test_pyphen.py"},
        test_data={"pyphen/dictionaries/hyph_fr.dic": "pyphen/dictionaries/hyph_fr.dic"},
        tops=["pyphen"],
    ),
    Library(
        "attrs",
        "25.3.0",
        "inspect/pickle/importlib.metadata heavy (hypothesis tests)",
        code=["src/attr", "src/attrs"],
        tests={"tests": "tests", "conftest.py": "conftest.py"},
        pytest_ini="xfail_strict = true\ntestpaths = tests\nfilterwarnings = once::Warning\n",
        tops=["attr", "attrs"],
        # Python 3.14+ standard library, imported only there.
        local_imports=["annotationlib"],
    ),
    Library(
        "mpmath",
        "1.3.0",
        "dependency of sympy: its own repository, its own publisher",
        code=["mpmath"],
        tests={},
        exclude=["mpmath/tests"],
        tops=["mpmath"],
        dependency_only=True,
        local_imports=["mpl_toolkits", "numpy", "pylab", "sage"],
    ),
    Library(
        "sympy",
        "1.13.3",
        "needs mpmath from another repository and publisher (signed declaration, "
        "trust_dependencies); core and elementary-function tests",
        code=["sympy"],
        tests={
            "sympy/core/tests": "core",
            "sympy/functions/elementary/tests": "elementary",
            "sympy/conftest.py": "conftest.py",
        },
        exclude_globs=["**/tests", "**/test-examples"],
        test_rewrites={
            "from sympy.core.tests.test_": "from test_",
        },
        tops=["sympy"],
        dependencies=["mpmath"],
        # Imported lazily or optionally by sympy (found by the import scan),
        # not from a repository: this environment has none of them.
        local_imports=[
            "Cython",
            "IPython",
            "PIL",
            "_pytest",
            "aesara",
            "all",
            "antlr4",
            "autolevparser",
            "flint",
            "gmpy2",
            "lark",
            "lxml",
            "matchpy",
            "matplotlib",
            "numpy",
            "pycosat",
            "pydy",
            "pyglet",
            "pymc3",
            "pysat",
            "pytest",
            "sage",
            "scipy",
            "symengine",
            "theano",
        ],
    ),
]
QUICK = "six"

#: The pytest plugin injected into both runs (imported by ``-p`` before any
#: conftest, so the repository is added before the library's conftest imports it).
PLUGIN = """
import importlib.util, json, os, sys

MODE = os.environ["SI_MODE"]
TOPS = os.environ["SI_TOPS"].split(",")
URL = os.environ.get("SI_URL", "")

if MODE == "remote":
    present = [t for t in TOPS if importlib.util.find_spec(t) is not None]
    assert not present, f"library present locally: {present}"
    import secure_import
    from secure_import.store.paths import Paths
    _dirs = os.environ["SI_DIRS"]
    PATHS = Paths.default(cache_dir=_dirs + "/cache", state_dir=_dirs + "/state",
                          log_dir=_dirs + "/log")
    REPO = secure_import.add_repo(
        URL, keys=[os.environ["SI_KEY"]], ca_bundle=os.environ["SI_CA"], paths=PATHS,
        trust_dependencies=os.environ.get("SI_TRUST_DEPS") == "1",
    )


def _modules():
    remote, local, virtual = [], [], []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is None or spec.name.partition(".")[0] not in TOPS:
            continue
        origin = spec.origin
        if origin is None:
            virtual.append(name)  # made by the library's own importer, or a data dir
        elif URL and origin.startswith(("https://127.0.0.1:", URL)):
            remote.append(name)
        else:
            local.append(f"{name} ({origin})")
    return sorted(remote), sorted(local), sorted(virtual)


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    count = lambda key: len([r for r in stats.get(key, []) if getattr(r, "when", "call")])
    failed = [r.nodeid for key in ("failed", "error") for r in stats.get(key, [])]
    remote, local, virtual = _modules()
    evidence = {}
    if MODE == "remote":
        from secure_import.store.audit import AuditLog
        records = list(AuditLog(PATHS.audit_log).records())
        evidence = {
            "dependency_records": [
                {"outcome": r["outcome"], "module": r.get("module"), "via": r.get("via")}
                for r in records if r["event"] == "dependency"
            ],
            "loads": sum(1 for r in records if r["event"] == "load"),
            "loads_via_declaration": sum(
                1 for r in records if r["event"] == "load" and r.get("via")),
            "repositories": sorted(r.url for r in secure_import.repositories()),
            "refusals": [r.get("code") for r in records if r["event"] == "refuse"],
        }
    with open(os.environ["SI_RESULT"], "w") as out:
        json.dump({
            "passed": count("passed"), "failed": count("failed"), "errors": count("error"),
            "skipped": count("skipped"), "xfailed": count("xfailed"),
            "failed_ids": sorted(set(failed)),
            "remote_modules": remote, "local_modules": local, "virtual_modules": virtual,
            "evidence": evidence,
        }, out, indent=1)
"""


def log(message: str) -> None:
    print(f"[acceptance] {message}", file=sys.stderr, flush=True)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- the isolated interpreter ---------------------------------------------------


def dependency_closure(roots: list[str]) -> dict[str, Distribution]:
    from packaging.requirements import Requirement

    found: dict[str, Distribution] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        key = normalize(name)
        if key in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return found


def build_site(site: Path, tested: list[str]) -> list[str]:
    """Symlink the test tools and secure_import's dependencies into ``site``."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    roots = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    dists = dependency_closure([*roots, "pytest", "hypothesis"])
    clash = sorted(set(dists) & {normalize(n) for n in tested})
    if clash:
        raise SystemExit(f"cannot test {clash}: needed locally by secure_import or pytest")
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for dist in dists.values():
        tops = {
            str(f).split("/", 1)[0]
            for f in dist.files or []
            if not str(f).startswith("..") and "__pycache__" not in str(f)
        }
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            target = site / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
    (site / "secure_import").symlink_to(PROJECT / "secure_import")
    return sorted(dists)


# -- one library -------------------------------------------------------------------


def fetch_sdist(lib: Library, downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"{re.escape(lib.name)}-{re.escape(lib.version)}\.tar\.gz", re.I)
    found = [p for p in downloads.iterdir() if pattern.fullmatch(p.name.replace("_", "-"))]
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{lib.name}=={lib.version}",
                "-d",
                str(downloads),
            ],
            check=True,
        )
        found = [p for p in downloads.iterdir() if pattern.fullmatch(p.name.replace("_", "-"))]
    (sdist,) = found
    return sdist


def _extract(archive: tarfile.TarFile, dest: Path) -> None:
    """Extract an sdist with the "data" filter, or, on interpreters that
    predate it (Debian 12's Python 3.11.2; it came in 3.11.4), after the same
    refusals done by hand: only files and directories, inside ``dest``."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise SystemExit(f"refusing sdist member {member.name!r} ({member.type!r})")
    archive.extractall(dest)  # noqa: S202 - every member checked above


def prepare(lib: Library, work: Path, downloads: Path) -> tuple[Path, Path]:
    """Extract; build the code tree (with .dist-info) and the test directory."""
    base = work / lib.name
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    with tarfile.open(fetch_sdist(lib, downloads)) as archive:
        _extract(archive, base / "sdist")
    (root,) = (base / "sdist").iterdir()
    tree, tests = base / "tree", base / "tests"
    tree.mkdir()
    tests.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for rel in lib.code:
        source = root / rel
        if source.is_dir():
            shutil.copytree(source, tree / source.name, ignore=skip)
        else:
            shutil.copy2(source, tree / source.name)
    for rel in lib.exclude:
        shutil.rmtree(tree / Path(rel).relative_to(Path(lib.code[0]).parent))
    for pattern in lib.exclude_globs:
        for found in sorted(tree.glob(pattern), reverse=True):
            if found.is_dir():
                shutil.rmtree(found)
    dist_info = tree / f"{lib.name}-{lib.version}.dist-info"
    dist_info.mkdir()
    shutil.copy2(root / "PKG-INFO", dist_info / "METADATA")
    (dist_info / "top_level.txt").write_text("\n".join(lib.tops) + "\n")
    for rel, dest in lib.tests.items():
        source, target = root / rel, tests / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=skip)
        else:
            shutil.copy2(source, target)
    for test_file in tests.rglob("*.py"):
        if lib.test_rewrites:
            text = test_file.read_text()
            for old, new in lib.test_rewrites.items():
                text = text.replace(old, new)
            test_file.write_text(text)
        if lib.exclude_globs and test_file.name == "__init__.py":
            test_file.unlink()  # test folders become plain directories (no package)
    for rel, dest in lib.test_data.items():
        (tests / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, tests / dest)
    (tests / "pytest.ini").write_text("[pytest]\n" + lib.pytest_ini)
    return tree, tests


def sign(tree: Path, out: Path, key: Path, extra: list[str] | None = None) -> None:
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
            *(extra or []),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"signing {tree} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("declared:"):
            log(line)


def run_suite(
    lib: Library,
    tests: Path,
    site: Path,
    plugin_dir: Path,
    result: Path,
    *,
    tree: Path | None,
    remote: dict[str, str] | None,
    dep_trees: list[Path] | None = None,
    tops: list[str] | None = None,
) -> dict[str, object]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tests.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "SI_MODE": "remote" if remote else "local",
        "SI_TOPS": ",".join(tops or lib.tops),
        "SI_RESULT": str(result),
        "PYTHONPATH": os.pathsep.join(
            [
                str(site),
                str(plugin_dir),
                *([str(tree)] if tree else []),
                *(str(t) for t in (dep_trees or []) if tree),
            ]
        ),
        **(remote or {}),
    }
    command = [
        sys.executable,
        "-S",
        "-s",
        "-P",
        "-m",
        "pytest",
        "-q",
        "-p",
        "si_accept",
        "-p",
        "no:cacheprovider",
        "-o",
        "console_output_style=classic",
    ]
    proc = subprocess.run(command, cwd=tests, env=env, capture_output=True, text=True, timeout=3600)
    result.with_suffix(".log").write_text(proc.stdout + proc.stderr)
    if not result.exists():
        raise SystemExit(
            f"{lib.name}: the test run produced no result\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    data: dict[str, object] = json.loads(result.read_text())
    data["tail"] = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    return data


@dataclass
class Outcome:
    lib: Library
    local: dict[str, object]
    remote: dict[str, object]
    seconds: float

    @property
    def parity(self) -> bool:
        keys = ("passed", "failed", "errors", "skipped", "xfailed")
        same = all(self.local[k] == self.remote[k] for k in keys)
        return same and self.local["failed_ids"] == self.remote["failed_ids"]

    @property
    def all_remote(self) -> bool:
        return not self.remote["local_modules"] and bool(self.remote["remote_modules"])


def keygen(name: str, directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "secure_import", "keygen", name, "--dir", str(directory)],
        check=True,
        cwd=PROJECT,
        capture_output=True,
    )
    return directory / f"{name}.key"


def run_library(
    lib: Library, work: Path, downloads: Path, site: Path, plugin_dir: Path, key: Path, ca: Path
) -> Outcome:
    started = time.monotonic()
    servers: list[RepoServer] = []
    dep_trees: list[Path] = []
    tops = list(lib.tops)
    extra: list[str] = [arg for name in lib.local_imports for arg in ("--local-import", name)]
    try:
        if lib.dependencies:
            declarations = []
            for dep_name in lib.dependencies:
                (dep,) = [d for d in LIBRARIES if d.name == dep_name]
                dep_tree, _ = prepare(dep, work, downloads)
                # Another publisher: its own key, its own repository and server.
                dep_key = keygen(f"{dep.name}-publisher", work / "keys" / dep.name)
                dep_out = work / dep.name / "repo"
                sign(
                    dep_tree,
                    dep_out,
                    dep_key,
                    [arg for name in dep.local_imports for arg in ("--local-import", name)],
                )
                server = RepoServer(dep_out, ssl_context=SERVER_CONTEXT)
                server.start()
                servers.append(server)
                dep_trees.append(dep_tree)
                tops += dep.tops
                for top in dep.tops:
                    declarations.append(
                        f"[requires.{top}]\nrepository = {json.dumps(server.url)}\n"
                        f"keys = [{json.dumps(str(dep_key.with_suffix('.pub')))}]\n"
                        f"distribution = {json.dumps(dep.name)}\n"
                    )
            requires = work / f"{lib.name}-requires.toml"
            requires.write_text("\n".join(declarations))
            extra += ["--requires", str(requires)]
        tree, tests = prepare(lib, work, downloads)
        out = work / lib.name / "repo"
        sign(tree, out, key, extra)
        local = run_suite(
            lib,
            tests,
            site,
            plugin_dir,
            work / lib.name / "local.json",
            tree=tree,
            remote=None,
            dep_trees=dep_trees,
            tops=tops,
        )
        server = RepoServer(out, ssl_context=SERVER_CONTEXT)
        server.start()
        servers.append(server)
        remote = run_suite(
            lib,
            tests,
            site,
            plugin_dir,
            work / lib.name / "remote.json",
            tree=None,
            remote={
                "SI_URL": server.url,
                "SI_KEY": str(key.with_suffix(".pub")),
                "SI_CA": str(ca),
                "SI_DIRS": str(work / lib.name / "consumer"),
                "SI_TRUST_DEPS": "1" if lib.dependencies else "0",
            },
            tops=tops,
        )
    finally:
        for server in servers:
            server.stop()
    return Outcome(lib, local, remote, time.monotonic() - started)


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| library | version | shape | local passed/failed | remote passed/failed "
        "| modules loaded remotely | parity |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:

        def pf(d: dict[str, object]) -> str:
            errors = f" (+{d['errors']} errors)" if d["errors"] else ""
            return f"{d['passed']}/{d['failed']}{errors}"

        remote_mods = len(o.remote["remote_modules"])  # type: ignore[arg-type]
        rows.append(
            f"| {o.lib.name} | {o.lib.version} | {o.lib.shape} | {pf(o.local)} | "
            f"{pf(o.remote)} | {remote_mods} (local: {len(o.remote['local_modules'])}) | "  # type: ignore[arg-type]
            f"{'yes' if o.parity and o.all_remote else 'NO'} |"
        )
    notes = []
    for o in outcomes:
        evidence = o.remote.get("evidence") or {}
        if o.lib.dependencies and isinstance(evidence, dict):
            deps = evidence.get("dependency_records") or []
            notes.append(
                f"- {o.lib.name}: served with {', '.join(o.lib.dependencies)} from "
                f"{len(evidence.get('repositories') or [])} repositories by two publishers; "
                f"dependency records {[(d['module'], d['outcome']) for d in deps]}; "
                f"{evidence.get('loads_via_declaration')} of {evidence.get('loads')} load "
                f"records name the declaration that allowed them; refusals by code: "
                f"{dict(Counter(evidence.get('refusals') or [])) or 'none'}"
            )
            for d in deps:
                notes.append(f"  - via: {d['via']}")
        for node in o.local["failed_ids"]:  # type: ignore[attr-defined]
            notes.append(f"- {o.lib.name}: `{node}` fails in the local run too (same in both).")
        for node, reason in o.lib.url_file_limits.items():
            notes.append(f"- {o.lib.name}: `{node}` cannot pass with a URL `__file__`: {reason}")
        if not o.parity:
            only_remote = sorted(
                set(o.remote["failed_ids"]) - set(o.local["failed_ids"])  # type: ignore[arg-type]
            )
            notes.append(f"- {o.lib.name}: NOT at parity; failing only remotely: {only_remote}")
        if o.remote["local_modules"]:
            notes.append(f"- {o.lib.name}: loaded locally: {o.remote['local_modules']}")
    return "\n".join([*rows, *(["", *notes] if notes else [])])


SERVER_CONTEXT = None


def main(argv: list[str] | None = None) -> int:
    global SERVER_CONTEXT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK} (the CI run)")
    parser.add_argument("--only", action="append", help="run only this library (repeatable)")
    parser.add_argument("--work", type=Path, default=HERE / ".work")
    args = parser.parse_args(argv)
    selected = [
        lib
        for lib in LIBRARIES
        if (not args.quick or lib.name == QUICK)
        and (not args.only or lib.name in args.only)
        and not lib.dependency_only
    ]
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    downloads = work / "downloads"
    started = time.monotonic()

    log("building the isolated site (test tools + secure_import dependencies only)")
    site = work / "site"
    build_site(site, [lib.name for lib in LIBRARIES])
    plugin_dir = work / "plugin"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / "si_accept.py").write_text(PLUGIN)

    keys = work / "keys"
    if keys.exists():
        shutil.rmtree(keys)
    subprocess.run(
        [sys.executable, "-m", "secure_import", "keygen", "acceptance", "--dir", str(keys)],
        check=True,
        cwd=PROJECT,
        capture_output=True,
    )
    certs = make_dev_certificates()
    ca = work / "ca.pem"
    ca.write_bytes(certs.ca_pem)
    SERVER_CONTEXT = server_ssl_context(certs)

    outcomes = []
    for lib in selected:
        log(f"{lib.name} {lib.version}: download, sign, serve, run the suite twice")
        outcome = run_library(lib, work, downloads, site, plugin_dir, keys / "acceptance.key", ca)
        log(
            f"{lib.name}: local {outcome.local['tail']} remote {outcome.remote['tail']} "
            f"({outcome.seconds:.1f} s)"
        )
        outcomes.append(outcome)
    report = table(outcomes)
    print(report)
    (work / "results.md").write_text(report + "\n")
    log(f"total {time.monotonic() - started:.1f} s")
    return 0 if all(o.parity and o.all_remote for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
