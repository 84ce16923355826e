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

Libraries that read data next to ``__file__`` (``materialise=True``: pytz,
parso) are served in materialise mode; their remote run counts a module as
remote when its loader is secure_import's and its real path lies under the
consumer's materialised trees, and a third run in the default URL mode shows
what the habit costs without it.  Libraries whose tests start child
interpreters (``children=True``: pebble, with process pools for the spawn,
forkserver and fork start methods) run in a real virtual environment
without ``-S`` (acceptance/childvenv.py): secure_import is installed into it,
so its ``.pth`` start-up hook is active in every child, and the library is
not.  Before the remote run the harness checks that the library is not
importable there and that none of the host's site-packages directories is
on the path; afterwards the audit log (shared with the children through
``SECURE_IMPORT_*_DIR``) must show children that inherited the repository
(``child-config``/ok), none refused, and module loads by child processes.

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
    python acceptance/run.py --quick    # six and pytz only, no URL-mode run (CI, ~15 s)
    python acceptance/run.py --only pebble   # one library

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
import time
import tomllib
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))

from secure_import.publish.devtls import make_dev_certificates, server_ssl_context  # noqa: E402
from secure_import.publish.serve import RepoServer  # noqa: E402

sys.path.insert(0, str(HERE))
from childvenv import build_child_venv, check_isolation  # noqa: E402
from libraries import LIBRARIES, QUICK, Library  # noqa: E402
from plugin import PLUGIN  # noqa: E402
from report import Outcome, table  # noqa: E402
from sdist import prepare  # noqa: E402


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


def test_tools(tested: list[str]) -> dict[str, Distribution]:
    """The test tools and secure_import's dependencies (with their closure)."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    roots = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    dists = dependency_closure([*roots, "pytest", "hypothesis"])
    clash = sorted(set(dists) & {normalize(n) for n in tested})
    if clash:
        raise SystemExit(f"cannot test {clash}: needed locally by secure_import or pytest")
    return dists


def link_dists(site: Path, dists: dict[str, Distribution]) -> None:
    """Symlink each distribution's top-level entries (and metadata) into ``site``."""
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


def build_site(site: Path, dists: dict[str, Distribution]) -> None:
    """The private site directory of the ``-S`` runs: tools, dependencies and
    secure_import itself, symlinked."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    link_dists(site, dists)
    (site / "secure_import").symlink_to(PROJECT / "secure_import")


# -- one library -------------------------------------------------------------------


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
    venv: Path | None = None,
) -> dict[str, object]:
    """One run of the library's tests.  Without ``venv``: ``python -S -s -P``
    with ``site`` on the path.  With ``venv`` (libraries that start child
    interpreters): that environment's interpreter with ``site`` enabled (so
    the start-up hook is active, in children too) and no ``site`` directory
    on the path; the isolation of the environment is checked first."""
    extra_path = [str(site)] if venv is None else []
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
                *extra_path,
                str(plugin_dir),
                *([str(tree)] if tree else []),
                *(str(t) for t in (dep_trees or []) if tree),
            ]
        ),
        **(remote or {}),
    }
    if remote:
        # Child interpreters look up the parent's description in the state
        # directory their environment names, and audit into the same log.
        dirs = Path(remote["SI_DIRS"])
        env["SECURE_IMPORT_CACHE_DIR"] = str(dirs / "cache")
        env["SECURE_IMPORT_STATE_DIR"] = str(dirs / "state")
        env["SECURE_IMPORT_LOG_DIR"] = str(dirs / "log")
    if venv is not None and remote:
        problems = check_isolation(venv, tops or lib.tops, env)
        if problems:
            raise SystemExit(f"{lib.name}: the environment is not isolated: {problems}")
    interpreter = [str(venv), "-s", "-P"] if venv else [sys.executable, "-S", "-s", "-P"]
    command = [
        *interpreter,
        "-m",
        "pytest",
        "-q",
        "-p",
        "si_accept",
        "-p",
        "no:cacheprovider",
        "-o",
        "console_output_style=classic",
        # A module failing at import time (the URL-mode runs) must not hide
        # the counts of the others.
        "--continue-on-collection-errors",
        *lib.pytest_args,
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


def keygen(name: str, directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "secure_import", "keygen", name, "--dir", str(directory)],
        check=True,
        cwd=PROJECT,
        capture_output=True,
    )
    return directory / f"{name}.key"


def run_library(
    lib: Library,
    work: Path,
    downloads: Path,
    site: Path,
    plugin_dir: Path,
    key: Path,
    ca: Path,
    venv: Path | None = None,
    *,
    compare_urls: bool = True,
) -> Outcome:
    started = time.monotonic()
    url_mode = None
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
            venv=venv,
        )
        server = RepoServer(out, ssl_context=SERVER_CONTEXT)
        server.start()
        servers.append(server)
        settings = {
            "SI_URL": server.url,
            "SI_KEY": str(key.with_suffix(".pub")),
            "SI_CA": str(ca),
            "SI_DIRS": str(work / lib.name / "consumer"),
            "SI_TRUST_DEPS": "1" if lib.dependencies else "0",
            "SI_MATERIALISE": "1" if lib.materialise else "0",
        }
        remote = run_suite(
            lib,
            tests,
            site,
            plugin_dir,
            work / lib.name / "remote.json",
            tree=None,
            remote=settings,
            tops=tops,
            venv=venv,
        )
        if lib.materialise and compare_urls:
            # The same in the default URL mode: what the habit costs without it.
            url_mode = run_suite(
                lib,
                tests,
                site,
                plugin_dir,
                work / lib.name / "remote-urls.json",
                tree=None,
                remote={
                    **settings,
                    "SI_MATERIALISE": "0",
                    "SI_DIRS": str(work / lib.name / "consumer-urls"),
                },
                tops=tops,
                venv=venv,
            )
    finally:
        for server in servers:
            server.stop()
    return Outcome(lib, local, remote, time.monotonic() - started, url_mode)


SERVER_CONTEXT = None


def main(argv: list[str] | None = None) -> int:
    global SERVER_CONTEXT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"only {', '.join(QUICK)} (the CI run)"
    )
    parser.add_argument("--only", action="append", help="run only this library (repeatable)")
    parser.add_argument("--work", type=Path, default=HERE / ".work")
    args = parser.parse_args(argv)
    selected = [
        lib
        for lib in LIBRARIES
        if (not args.quick or lib.name in QUICK)
        and (not args.only or lib.name in args.only)
        and not lib.dependency_only
    ]
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    downloads = work / "downloads"
    started = time.monotonic()

    log("building the isolated site (test tools + secure_import dependencies only)")
    site = work / "site"
    dists = test_tools([lib.name for lib in LIBRARIES])
    build_site(site, dists)
    venv = None
    if any(lib.children for lib in selected):
        log("building the virtual environment for child interpreters (secure_import installed)")
        venv = build_child_venv(work / "venv", PROJECT, dists, link_dists)
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
        outcome = run_library(
            lib,
            work,
            downloads,
            site,
            plugin_dir,
            keys / "acceptance.key",
            ca,
            venv if lib.children else None,
            compare_urls=not args.quick,
        )
        log(
            f"{lib.name}: local {outcome.local['tail']} remote {outcome.remote['tail']} "
            f"({outcome.seconds:.1f} s)"
        )
        outcomes.append(outcome)
    report = table(outcomes)
    print(report)
    (work / "results.md").write_text(report + "\n")
    log(f"total {time.monotonic() - started:.1f} s")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
