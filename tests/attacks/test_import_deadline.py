"""THREATS.md T9 for a whole import (issue 14): a cold package of 48 modules
whose bundle is missing falls back to fetching file by file, 8 at a time.  A
hostile server drips every file (each would take far longer than the test),
and either tampers with one of them or simply lets the import's budget run
out.  The import must fail on the first failure, within a bound far below
the sum of the per-file deadlines, with no request started after it and the
downloads in flight stopped, and nothing unverified cached.

Bounds are relative to what a dripped file would take on its own
(``DRIP_SECONDS``, about 30 s: the server's cap on one response), so the tests
hold on a loaded machine.
"""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from typing import Any

import pytest

from secure_import.config import BUNDLE_DIR, MANIFEST_NAME, Limits
from secure_import.errors import DeadlineError, HashMismatchError
from secure_import.publish.serve import Response

from .conftest import Scenario

MODULES = 48
#: Bytes of each module, and the drip: one byte every 50 ms, so one file
#: would take well over the server's 30 s cap on a response.
BODY = 2000
DRIP = 0.05
DRIP_SECONDS = 30.0
PARALLEL = 8


def limits(**changes: Any) -> Limits:
    """No throughput rule cuts the drips in these tests (the window is longer
    than the test): only the import's own deadline and cancellation may."""
    values: dict[str, Any] = {
        "throughput_window": 60.0,
        "min_throughput": 1,
        "read_timeout": 60.0,
        "max_parallel": PARALLEL,
    }
    return Limits(**{**values, **changes})


def publish_wide(scenario: Scenario) -> list[str]:
    """Package ``wide``: an ``__init__`` and 47 modules, no bundle served.
    Returns the module paths in the order the fallback fetches them."""
    scenario.publisher.write("good.py", "VALUE = 1\n")
    scenario.publisher.write("wide/__init__.py", "# " + "i" * (BODY - 3) + "\n")
    for i in range(MODULES - 1):
        scenario.publisher.write(f"wide/m{i:02d}.py", f"X = {i}\n# " + "x" * (BODY - 12) + "\n")
    scenario.publisher.publish()
    shutil.rmtree(scenario.publisher.out / BUNDLE_DIR, ignore_errors=True)  # 404: per file
    return sorted(p for p in scenario.publisher.signed_files() if p.startswith("wide/"))


def drip_everything(scenario: Scenario, paths: list[str]) -> None:
    for path in paths:
        body = (scenario.publisher.out / path).read_bytes()
        scenario.publisher.respond(path, Response(body=body, drip_interval=DRIP))


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("secure-import-fetch")]


def wait_for_fetch_threads_to_end(bound: float) -> float:
    """Seconds until no fetch worker is left (at most ``bound``)."""
    started = time.monotonic()
    while fetch_threads() and time.monotonic() - started < bound:
        time.sleep(0.02)
    return time.monotonic() - started


def module_requests(scenario: Scenario) -> list[tuple[str, float]]:
    return [
        (r.path, r.time) for r in scenario.publisher.server.requests if r.path.startswith("/wide/")
    ]


def import_wide() -> object:
    return importlib.import_module("wide")


def test_t9_one_tampered_file_cancels_the_other_fallback_downloads(scenario: Scenario) -> None:
    """``wide/__init__.py`` (the first fetched) is tampered and answered
    after half a second, while 7 other workers are dripping: the hash
    mismatch ends the import at once, the 7 drips stop at their next byte,
    and none of the 40 queued files is ever requested."""
    paths = publish_wide(scenario)
    assert len(paths) == MODULES and paths[0] == "wide/__init__.py"
    scenario.warm(limits=limits())  # the manifest accepted; ``wide`` cold
    drip_everything(scenario, paths[1:])
    evil = scenario.evil().ljust(BODY, b"#")
    scenario.publisher.respond(paths[0], Response(body=evil, delay=0.5))
    scenario.publisher.server.clear_requests()

    started = time.monotonic()
    exc = scenario.refused(import_wide, HashMismatchError, "hash-mismatch")
    failed_at = time.monotonic()
    elapsed = failed_at - started

    assert exc.url == scenario.publisher.url + paths[0]  # the first failure, not a cancellation
    # Far below one dripped file, let alone 47 of them 8 at a time.
    assert elapsed < DRIP_SECONDS / 3, elapsed
    requested = module_requests(scenario)
    assert len(requested) <= PARALLEL, requested  # the queue never started
    assert all(at <= failed_at for _, at in requested)
    # The downloads in flight stopped at their next byte: no worker is left
    # reading (each would drip for tens of seconds otherwise).
    assert wait_for_fetch_threads_to_end(DRIP_SECONDS / 3) < DRIP_SECONDS / 3
    time.sleep(0.5)
    assert module_requests(scenario) == requested  # nothing started afterwards
    scenario.consumer.assert_cache_verified(absent=evil)


def test_t9_the_import_deadline_ends_a_dripping_fallback_for_all_workers(
    scenario: Scenario,
) -> None:
    """Every file drips: the import's budget (3 s here) runs out while the
    first 8 downloads are in flight; the import fails then, on the import
    deadline, and the other 40 files are never requested."""
    paths = publish_wide(scenario)
    scenario.warm(limits=limits(import_deadline=3.0))
    drip_everything(scenario, paths)
    scenario.publisher.server.clear_requests()

    started = time.monotonic()
    exc = scenario.refused(import_wide, DeadlineError, "deadline-exceeded")
    failed_at = time.monotonic()

    assert exc.check == "import-deadline"
    assert failed_at - started < DRIP_SECONDS / 3
    requested = module_requests(scenario)
    assert 0 < len(requested) <= PARALLEL
    assert wait_for_fetch_threads_to_end(DRIP_SECONDS / 3) < DRIP_SECONDS / 3
    time.sleep(0.5)
    assert module_requests(scenario) == requested


def test_t9_the_manifest_and_the_package_share_one_import_budget(scenario: Scenario) -> None:
    """The manifest arrives only after 6 s of an 8 s budget: the files that
    drip next get what is left (about 2 s), not a fresh 8 s (~14 s in all).
    The bound leaves 3 s either side for a slow machine."""
    paths = publish_wide(scenario)
    envelope = scenario.publisher.manifest_bytes()
    scenario.publisher.respond(MANIFEST_NAME, Response(body=envelope, delay=6.0))
    drip_everything(scenario, paths)
    scenario.consumer.add(limits=limits(import_deadline=8.0))

    started = time.monotonic()
    with pytest.raises(DeadlineError) as info:  # (the manifest itself is accepted and cached)
        import_wide()
    elapsed = time.monotonic() - started

    assert info.value.check == "import-deadline"
    assert [r["code"] for r in scenario.consumer.refusals()] == ["deadline-exceeded"]
    scenario.consumer.assert_cache_verified()
    manifest_at = next(
        r.time for r in scenario.publisher.server.requests if r.path == "/" + MANIFEST_NAME
    )
    assert manifest_at - started < 6.0
    # Budget shared: ~8 s in all.  A fresh budget for the package would make it ~14 s.
    assert elapsed < 11.0, elapsed


@pytest.mark.parametrize("parallel", [1, 8])
def test_t9_an_honest_fallback_still_imports_every_module(
    scenario: Scenario, parallel: int
) -> None:
    """The same 48 files served promptly: all fetched, verified and imported
    (cancellation only ever follows a failure)."""
    publish_wide(scenario)
    scenario.consumer.add(limits=limits(max_parallel=parallel))
    import_wide()
    assert importlib.import_module("wide.m46").X == 46
    assert len(module_requests(scenario)) == MODULES
    scenario.consumer.assert_cache_verified()
