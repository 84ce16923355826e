"""One measurement in a fresh interpreter; prints one JSON line on stdout.

Run by ``bench/run.py`` as ``python -I [-B] bench/child.py '<json config>'``.
Standard library only at the top, so the same file runs in the httpimport
environment.  Times are ``time.perf_counter`` readings inside this process:

- ``setup``: what a variant needs before the first import (``import
  secure_import`` + ``add_repo``; ``import httpimport``); no network;
- ``import``: ``import <package>`` plus ``check()``, i.e. everything the import
  itself costs, including any network round trip it makes.

``collections``: garbage-collector passes that ran inside the timed import, by
generation.  Which import a generation-1 pass lands in depends on how many
objects were allocated before it (the setup), so it is reported, not hidden.

Memory: ``maxrss_kb`` is the child's peak resident set (``VmHWM``, whole
process, libraries included).  With ``"trace": true`` the import runs under
``tracemalloc`` and ``traced_peak`` is the peak of Python allocations made
during the import only (tracing slows the import, so those runs are separate
and their times are not reported).

The child asserts correctness itself (the package computes the expected value;
remote modules come from https URLs) and exits non-zero if anything is off.
"""

from __future__ import annotations

import gc
import importlib
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

#: Garbage collections that ran inside the timed import, by generation.
_COLLECTIONS = [0, 0, 0]


def _count_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _COLLECTIONS[info["generation"]] += 1


def _import_and_check(cfg: dict[str, Any]) -> tuple[float, int]:
    name = cfg["package"]
    trace = cfg.get("trace", False)
    if trace:
        tracemalloc.start()
    gc.callbacks.append(_count_collection)
    start = time.perf_counter()
    module = importlib.import_module(name)
    result = module.check()
    elapsed = time.perf_counter() - start
    gc.callbacks.remove(_count_collection)
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if result != cfg["expected"]:
        raise SystemExit(f"{name}.check() returned {result}, expected {cfg['expected']}")
    return elapsed, peak


def _check_origins(cfg: dict[str, Any], *, remote: bool) -> dict[str, Any]:
    name = cfg["package"]
    mods = [m for n, m in sys.modules.items() if n == name or n.startswith(name + ".")]
    if len(mods) != cfg["modules"]:
        raise SystemExit(f"{len(mods)} modules of {name} loaded, expected {cfg['modules']}")
    for mod in mods:
        origin = getattr(getattr(mod, "__spec__", None), "origin", None) or ""
        where = getattr(mod, "__file__", "") or ""
        if remote and not where.startswith("https://"):
            raise SystemExit(f"{mod.__name__} came from {where!r}, not https")
        if not remote and where.startswith("https://"):
            raise SystemExit(f"{mod.__name__} unexpectedly remote: {where}")
        if cfg["mode"].startswith("si-") and not origin.startswith("https://"):
            raise SystemExit(f"{mod.__name__} has origin {origin!r}, not https")
    return {"file": getattr(sys.modules[name], "__file__", None)}


def _secure_import_setup(cfg: dict[str, Any]) -> Any:
    sys.path.insert(0, cfg["project"])
    import secure_import
    from secure_import.store.paths import Paths

    paths = Paths(
        cache_dir=Path(cfg["dirs"]) / "cache",
        state_dir=Path(cfg["dirs"]) / "state",
        log_dir=Path(cfg["dirs"]) / "log",
    )
    kwargs: dict[str, Any] = {}
    if cfg.get("allow"):
        kwargs["modules"] = cfg["allow"]
    return secure_import.add_repo(
        cfg["url"],
        keys=[cfg["pubkey"]],
        ca_bundle=cfg["ca"],
        paths=paths,
        offline=cfg["mode"] == "si-offline",
        **kwargs,
    )


def run_import(cfg: dict[str, Any]) -> dict[str, Any]:
    mode = cfg["mode"]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    repo = None
    if mode in ("local", "local-nopyc"):
        sys.path.insert(0, cfg["pkgroot"])
    elif mode == "httpimport":
        import httpimport  # type: ignore[import-not-found]
    elif mode.startswith("si-"):
        repo = _secure_import_setup(cfg)
    else:
        raise SystemExit(f"unknown mode {mode}")
    out["setup"] = time.perf_counter() - t0
    if mode == "httpimport":
        t1 = time.perf_counter()
        sys.meta_path.append(httpimport.HttpImporter(cfg["url"], ca_file=cfg["ca"]))
        out["importer_init"] = time.perf_counter() - t1
        elapsed, peak = _import_and_check(cfg)
        elapsed += out["importer_init"]
    else:
        elapsed, peak = _import_and_check(cfg)
    out["import"] = elapsed
    out["traced_peak"] = peak
    out["collections"] = list(_COLLECTIONS)
    out.update(_check_origins(cfg, remote=mode in ("httpimport",) or mode.startswith("si-")))
    if repo is not None:
        fetcher = repo._fetcher
        out["client_requests"] = 0 if fetcher is None else fetcher.stats.requests
        # The network's share of the timed import: TLS client set-up and requests.
        out["request_s"] = 0.0 if fetcher is None else fetcher.stats.seconds
        bytecode_dir = Path(cfg["dirs"]) / "cache" / "bytecode"
        out["bytecode_files"] = sum(1 for p in bytecode_dir.rglob("*") if p.is_file())
    return out


def run_overhead(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cost of imports the finder does not serve, with or without a repository.

    ``variant``: ``none`` (no secure_import at all), ``repo`` (a repository
    whose names come from its manifest) or ``repo-allow`` (``modules=`` given).
    Times (a) importing a local package of many modules found on sys.path and
    (b) ``misses`` imports of names that exist nowhere.
    """
    sys.path.insert(0, cfg["pkgroot"])
    if cfg["variant"] != "none":
        _secure_import_setup(cfg)
    else:
        # The same sys.path as the other variants (which put the project first
        # to import secure_import): an extra entry costs every absent name a
        # directory lookup, which is not the finder's cost.
        sys.path.insert(0, cfg["project"])
    start = time.perf_counter()
    module = importlib.import_module(cfg["package"])
    if module.check() != cfg["expected"]:
        raise SystemExit("local package gave the wrong result")
    local = time.perf_counter() - start
    misses = cfg["misses"]
    start = time.perf_counter()
    for i in range(misses):
        try:
            importlib.import_module(f"absent_module_{i:05d}")
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("an absent module was found")
    missed = time.perf_counter() - start
    if cfg["variant"] != "none":
        finder = sys.meta_path[-1]
        if type(finder).__name__ != "SecureFinder":
            raise SystemExit("the secure finder is not installed last on sys.meta_path")
    return {"local": local, "misses": missed}


class _EmptyFinder:
    """A meta-path finder that finds nothing: what importlib charges for any
    entry on ``sys.meta_path``, the floor for a finder that must be there."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        return None


def run_overhead_paired(cfg: dict[str, Any]) -> dict[str, Any]:
    """The finder's cost per import it does not serve, measured in one process.

    A repository is added with ``modules=``; then, ``rounds`` times, ``misses``
    imports of absent names are timed three ways, in rotating order: with the
    secure finder removed from ``sys.meta_path`` (``none``), in place
    (``secure``), and replaced by :class:`_EmptyFinder` (``empty``).  Adjacent
    timings share the process's state, so their differences are the finder's
    own cost, free of the noise between processes.
    """
    _secure_import_setup(cfg)
    finder = sys.meta_path[-1]
    if type(finder).__name__ != "SecureFinder":
        raise SystemExit("the secure finder is not installed last on sys.meta_path")
    empty = _EmptyFinder()
    arrangements = {"none": None, "secure": finder, "empty": empty}
    times: dict[str, list[float]] = {name: [] for name in arrangements}
    counter = 0
    names = list(arrangements)
    for round_ in range(cfg["rounds"]):
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            sys.meta_path[:] = [f for f in sys.meta_path if f is not finder and f is not empty]
            installed = arrangements[name]
            if installed is not None:
                sys.meta_path.append(installed)
            start = time.perf_counter()
            for _ in range(cfg["misses"]):
                counter += 1
                try:
                    importlib.import_module(f"absent_paired_{counter:07d}")
                except ModuleNotFoundError:
                    pass
                else:
                    raise SystemExit("an absent module was found")
            times[name].append(time.perf_counter() - start)
    return {"paired": times}


def _peak_rss_kb() -> int:
    """Peak RSS of this process image.  ``ru_maxrss`` is not used on Linux: it
    keeps the parent's high-water mark across fork+exec; ``VmHWM`` does not."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg["mode"] == "overhead":
        out = run_overhead(cfg)
    elif cfg["mode"] == "overhead-paired":
        out = run_overhead_paired(cfg)
    else:
        out = run_import(cfg)
    out["maxrss_kb"] = _peak_rss_kb()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
