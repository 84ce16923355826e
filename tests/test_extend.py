"""A local package whose missing subpackages come from a signed repository."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import ConfigError, NotListedError
from secure_import.hook.extend import extend_package
from secure_import.hook.finder import RemoteLoader
from secure_import.verify.pointer import POINTER_NAME

from .conftest import Consumer, Publisher, canary_code, forget_remote_modules

LOCAL_INIT = """import secure_import
from secure_import.hook.extend import extend_package
LOCAL = True
PATHS = secure_import.Paths.default(cache_dir={cache!r}, state_dir={state!r}, log_dir={log!r})
REPO = extend_package(__name__, {url!r}, keys=[{key!r}], ca_bundle={ca!r}, paths=PATHS)
"""


def publish_plugins(publisher: Publisher, canary: Path) -> None:
    # The remote __init__ must never run: the local one is the package.
    publisher.write("lightpkg/__init__.py", canary_code(canary))
    publisher.write("lightpkg/heavy/__init__.py", "from .engine import run\n")
    publisher.write(
        "lightpkg/heavy/engine.py",
        "from .. import LOCAL\n\ndef run():\n    return ('engine', LOCAL)\n",
    )
    publisher.write("lightpkg/shadowed.py", "WHERE = 'remote'\n")
    publisher.write("otherpkg.py", "raise SystemExit('never served')\n")
    publisher.publish()


@pytest.fixture
def local_pkg(
    tmp_path: Path,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    publish_plugins(publisher, canary)
    root = tmp_path / "site"
    pkg = root / "lightpkg"
    pkg.mkdir(parents=True)
    paths = consumer.paths
    (pkg / "__init__.py").write_text(
        LOCAL_INIT.format(
            url=publisher.url,
            key=str(publisher.pub_path),
            ca=str(publisher.rig.ca_pem_path),
            cache=str(paths.cache_dir),
            state=str(paths.state_dir),
            log=str(paths.log_dir),
        )
    )
    (pkg / "shadowed.py").write_text("WHERE = 'local'\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [n for n in sys.modules if n == "lightpkg" or n.startswith("lightpkg.")]:
        del sys.modules[name]
    forget_remote_modules()


def test_missing_subpackage_is_fetched_verified_and_runs(
    local_pkg: Path, publisher: Publisher, canary: Path, consumer: Consumer
) -> None:
    import lightpkg  # type: ignore[import-not-found]
    import lightpkg.heavy  # type: ignore[import-not-found]

    assert lightpkg.__file__ == str(local_pkg / "lightpkg" / "__init__.py")
    assert lightpkg.__path__[-1] == publisher.url + "lightpkg/"
    assert lightpkg.heavy.run() == ("engine", True)
    assert isinstance(lightpkg.heavy.__spec__.loader, RemoteLoader)
    assert lightpkg.heavy.__file__ == publisher.url + "lightpkg/heavy/__init__.py"
    assert not canary.exists()  # the remote top-level __init__ never ran
    loads = {r["module"] for r in consumer.audit() if r["event"] == "load"}
    assert loads == {"lightpkg.heavy", "lightpkg.heavy.engine"}


def test_local_submodules_win(local_pkg: Path) -> None:
    import lightpkg.shadowed  # type: ignore[import-not-found]

    assert lightpkg.shadowed.WHERE == "local"


def test_only_names_under_the_package_are_served(local_pkg: Path, publisher: Publisher) -> None:
    import lightpkg  # noqa: F401

    with pytest.raises(ModuleNotFoundError) as info:
        importlib.import_module("otherpkg")
    assert not isinstance(info.value, NotListedError)
    publisher.server.clear_requests()
    with pytest.raises(NotListedError):
        importlib.import_module("lightpkg.missing")
    assert [p for p in publisher.request_paths() if p.endswith(".py")] == []


def test_pkgutil_lists_local_and_remote_submodules(local_pkg: Path) -> None:
    import lightpkg

    names = {m.name for m in pkgutil.iter_modules(lightpkg.__path__)}
    assert names == {"heavy", "shadowed"}


def test_extending_twice_reuses_the_repository(local_pkg: Path) -> None:
    import lightpkg

    first = lightpkg.REPO
    importlib.reload(lightpkg)
    assert lightpkg.REPO is first
    assert lightpkg.__path__.count(first.url + "lightpkg/") == 1


def test_removed_extension_stops_serving(local_pkg: Path) -> None:
    import lightpkg

    secure_import.remove_repo(lightpkg.REPO)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lightpkg.heavy")


def test_refuses_what_is_not_a_local_package(publisher: Publisher) -> None:
    with pytest.raises(ConfigError):
        extend_package("not_imported_pkg", publisher.url, keys=[publisher.pub_path])
    with pytest.raises(ConfigError):
        extend_package("json", publisher.url, keys=[publisher.pub_path])


def test_later_runs_use_the_cache_and_cache_clear_fetches_again(
    local_pkg: Path, publisher: Publisher, consumer: Consumer
) -> None:
    script = "import lightpkg.heavy; print(lightpkg.heavy.run())"
    env = {
        "PYTHONPATH": f"{local_pkg}:{Path(secure_import.__file__).parent.parent}",
        "PATH": "/usr/bin:/bin",
    }

    def run() -> list[str]:
        publisher.server.clear_requests()
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "('engine', True)"
        return [
            p for p in publisher.request_paths() if not p.endswith(("manifest.json", POINTER_NAME))
        ]

    assert run() != []  # first run downloads
    assert run() == []  # second run: only the manifest is revalidated
    clear = subprocess.run(
        [
            sys.executable,
            "-m",
            "secure_import",
            "cache",
            "clear",
            "--cache-dir",
            str(consumer.paths.cache_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert clear.returncode == 0, clear.stderr
    assert run() != []  # after clearing, fetched again
