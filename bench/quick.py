"""The quick modes of the whole-process benchmarks, called by ``run.py --quick``.

Each script's ``--quick`` checks its harness on tiny inputs (loopback only, no
delay, one run, no report written): the rows can be produced and their
structural claims hold (request counts, no network when offline, a cache that
was filled).  Timings from a quick run mean nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: The scripts, in the order they run (each has ``main(argv)``).
SCRIPTS = ("alternatives", "bigpkg", "scaling", "servers", "startup")


def run_all() -> None:
    for name in SCRIPTS:
        start = time.perf_counter()
        module = __import__(name)
        module.main(["--quick"])
        print(f"bench/{name}.py --quick: ok ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    run_all()
