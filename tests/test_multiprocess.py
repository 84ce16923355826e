"""Several processes sharing one cold cache, state and audit log at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from secure_import.store.audit import verify_chain
from secure_import.store.cache import Cache

from .conftest import Consumer, Publisher

PROCESSES = 8

CHILD = textwrap.dedent(
    """
    import json, sys, time, pathlib
    import secure_import
    from secure_import.store.paths import Paths
    cfg = json.loads(sys.argv[1])
    go = pathlib.Path(cfg["go"])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    secure_import.add_repo(
        cfg["url"], keys=[cfg["key"]], ca_bundle=cfg["ca"],
        paths=Paths(**{k: pathlib.Path(v) for k, v in cfg["paths"].items()}),
    )
    import wide
    assert wide.total() == sum(range(12)), wide.total()
    print(wide.__spec__.origin)
    """
)


def test_eight_processes_import_through_one_cold_cache(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    parts = [f"from . import m{i}" for i in range(12)]
    publisher.write(
        "wide/__init__.py",
        "\n".join(parts) + "\n\ndef total():\n"
        "    return sum(getattr(m, 'V') for m in ("
        + ", ".join(f"m{i}" for i in range(12))
        + "))\n",
    )
    for i in range(12):
        publisher.write(f"wide/m{i}.py", f"V = {i}\n")
    publisher.publish()
    go = tmp_path / "go"
    cfg = json.dumps(
        {
            "go": str(go),
            "url": publisher.url,
            "key": str(publisher.pub_path),
            "ca": str(publisher.rig.ca_pem_path),
            "paths": {
                "cache_dir": str(consumer.paths.cache_dir),
                "state_dir": str(consumer.paths.state_dir),
                "log_dir": str(consumer.paths.log_dir),
            },
        }
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, cfg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    time.sleep(0.5)
    go.write_text("go")
    results = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == publisher.url + "wide/__init__.py"
    # The cache holds exactly the 13 verified modules, nothing torn or extra.
    entries = list(Cache(consumer.paths.cache_dir).entries())
    assert len(entries) == 13
    consumer.assert_cache_verified()
    # One manifest record and 13 loads per process, in one unbroken chain.
    report = verify_chain(consumer.paths.audit_log)
    assert report.ok, report
    assert report.records == PROCESSES * (1 + 13)
    events = [r["event"] for r in consumer.audit()]
    assert events.count("load") == PROCESSES * 13
    assert events.count("manifest") == PROCESSES
