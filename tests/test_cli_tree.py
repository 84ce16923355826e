"""``secure-import lock`` writes one lock for the dependency graph and
``secure-import tree`` shows it, through the real command line: two
publishers on loopback HTTPS, the consumer configures only the first with
``trust_dependencies``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .clirunner import run_cli, run_json
from .conftest import Publisher
from .httpsrig import TLSServerFactory


@pytest.fixture
def pair(tmp_path: Path, rig: TLSServerFactory) -> Iterator[tuple[Publisher, Publisher]]:
    sym, mp = Publisher(tmp_path, rig, "sym"), Publisher(tmp_path, rig, "mp")
    try:
        yield sym, mp
    finally:
        sym.close()
        mp.close()


def publish_mp(mp: Publisher, version: str) -> None:
    for old in mp.src.glob("*.dist-info/METADATA"):
        old.unlink()
        old.parent.rmdir()
    mp.write("mpy/__init__.py", f"V = {version!r}\n")
    mp.write(f"mpy-{version}.dist-info/METADATA", f"Name: mpy\nVersion: {version}\n")
    mp.publish()


def test_lock_covers_the_graph_and_tree_reports_a_range_that_no_longer_matches(
    pair: tuple[Publisher, Publisher], tmp_path: Path
) -> None:
    sym, mp = pair
    publish_mp(mp, "1.0")
    sym.write("symy/__init__.py", "import mpy\nDEP = mpy.V\n")
    deps = tmp_path / "deps.toml"
    deps.write_text(
        f'[requires.mpy]\nrepository = "{mp.url}"\nkeys = ["{mp.pub_path}"]\nversions = "~=1.0"\n'
    )
    sym.publish(requires=deps)
    config = tmp_path / "consumer.toml"
    config.write_text(
        f'[repositories.sym]\nurl = "{sym.url}"\nkeys = ["{sym.pub_path}"]\n'
        f'modules = ["symy"]\nca_bundle = "{sym.rig.ca_pem_path}"\ntrust_dependencies = true\n'
    )
    lock = tmp_path / "graph.lock"
    locked = run_json(tmp_path, "lock", "--config", config, "--output", lock)
    by_url = {r["url"]: r for r in locked["repositories"]}
    assert set(by_url) == {sym.url, mp.url}
    assert by_url[mp.url]["reached_by"] == f"mpy declared by {sym.url}"
    assert set(json.loads(lock.read_text())["repositories"]) == {sym.url, mp.url}

    tree = run_json(tmp_path, "tree", "--config", config)
    assert tree["ok"]
    (edge,) = tree["edges"]
    assert edge["name"] == "mpy" and edge["served_by"] == mp.url and edge["followed"]
    assert edge["in_use"].startswith("mpy 1.0")
    human = run_cli(tmp_path, "tree", "--config", config)
    assert human.returncode == 0 and "mpy ~=1.0" in human.stdout

    script = tmp_path / "use.py"
    script.write_text("import symy\nprint(symy.DEP)\n")
    frozen = ["--config", str(config), "--frozen", "--lock-file", str(lock)]
    ran = run_cli(tmp_path, "run", *frozen, script)
    assert ran.returncode == 0 and ran.stdout.strip() == "1.0", ran.stderr

    publish_mp(mp, "2.0")  # outside ~=1.0
    tree = run_json(tmp_path, "tree", "--config", config, expect=1)
    assert not tree["ok"]
    (edge,) = tree["edges"]
    assert edge["code"] == "dependency-range" and "~=1.0" in edge["error"]
    assert "2.0" in edge["error"]
    human = run_cli(tmp_path, "tree", "--config", config)
    assert human.returncode == 1 and "FAIL dependency-range" in human.stdout
    # tree saw (and cached) the dependency's new manifest: the frozen program
    # refuses it rather than run anything but the locked pair.
    ran = run_cli(tmp_path, "run", *frozen, script)
    assert ran.returncode == 1 and "lock-mismatch" in ran.stderr
    assert mp.url + "secure-import-manifest.json" in ran.stderr
    # Unfrozen, the new version arrives with the freshness check and is refused.
    ran = run_cli(tmp_path, "run", "--config", str(config), script)
    assert ran.returncode == 1 and "dependency-range" in ran.stderr and "~=1.0" in ran.stderr
