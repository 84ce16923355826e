"""Remote modules behave exactly as local ones do (issue 4), over real HTTPS.

Every test imports a package published by the simulator and checks what a
local import would give: the module attributes importlib sets, source for
``inspect``/``linecache``/``doctest``, ``reload``, ``pkgutil``, pickling,
type hints, threads, and libraries that play tricks with the import system.
"""

from __future__ import annotations

import copy
import dataclasses
import doctest
import importlib
import importlib.util
import inspect
import linecache
import pickle
import pkgutil
import runpy
import sys
import threading
import traceback
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import NotListedError
from secure_import.hook.finder import RemoteLoader, RemotePathEntryFinder, path_hook

from .conftest import Consumer, Publisher

INIT = '''"""The faith package.

>>> 1 + 1
2
"""
RUNS = []
from .shapes import Point, area
'''

SHAPES = '''"""Shapes with type hints, dataclasses and doctests."""
from __future__ import annotations

import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class Point:
    """A point.

    >>> Point(1, 2).norm2()
    5
    """

    x: int
    y: int
    tags: list[str] = dataclasses.field(default_factory=list)

    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y


def area(width: int, height: int) -> int:
    """Area of a rectangle.

    >>> area(2, 3)
    6
    """
    return width * height


sys.modules[__name__.rpartition(".")[0]].RUNS.append(__name__)
'''

SUB_INIT = "from .deep import where\n"
SUB_DEEP = """from ..shapes import Point


def where():
    return Point(3, 4)
"""
SUB_PLAIN = "NAME = __name__\n"
BOOM = "import faith\nfaith.RUNS.append(__name__)\nraise ZeroDivisionError('boom at import')\n"
SLOW = """import time
import faith

faith.RUNS.append(__name__)
time.sleep(0.05)
VALUE = __name__
"""
CLI = """import sys
RESULT = ("ran as", __name__, __file__)
if __name__ == "__main__":
    sys.modules["faith"].RUNS.append("cli-main")
"""
METAIMP = '''"""Installs its own meta-path importer (as six does for six.moves)."""
import importlib.abc
import importlib.util
import sys


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "faith.virtual":
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        import faith.shapes
        return faith.shapes

    def exec_module(self, module):
        pass


class _Appended(_Alias):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "faith.appended":
            return importlib.util.spec_from_loader(fullname, self)
        return None


IMPORTER = _Alias()
sys.meta_path.insert(0, IMPORTER)
sys.meta_path.append(_Appended())  # after secure_import's finder, as six does
'''
ALIASING = '''"""Exposes faith.sub under a second name by aliasing its __path__."""
import sys
import types

import faith.sub

alias = types.ModuleType("faith_alias")
alias.__path__ = list(faith.sub.__path__)
sys.modules["faith_alias"] = alias
'''

SLOW_NAMES = [f"slow{i}" for i in range(4)]


def publish_faith(publisher: Publisher) -> None:
    publisher.write("faith/__init__.py", INIT)
    publisher.write("faith/shapes.py", SHAPES)
    publisher.write("faith/sub/__init__.py", SUB_INIT)
    publisher.write("faith/sub/deep.py", SUB_DEEP)
    publisher.write("faith/sub/plain.py", SUB_PLAIN)
    publisher.write("faith/boom.py", BOOM)
    publisher.write("faith/cli.py", CLI)
    publisher.write("faith/metaimp.py", METAIMP)
    publisher.write("faith/aliasing.py", ALIASING)
    for name in SLOW_NAMES:
        publisher.write(f"faith/{name}.py", SLOW)
    publisher.publish()


@pytest.fixture
def repo(publisher: Publisher, consumer: Consumer) -> secure_import.Repository:
    publish_faith(publisher)
    return consumer.add()


@pytest.fixture
def clean_meta_path() -> Iterator[None]:
    before = list(sys.meta_path)
    yield
    sys.meta_path[:] = before
    for name in [n for n in sys.modules if n == "faith_alias" or n.startswith("faith_alias.")]:
        del sys.modules[name]


# -- module attributes ---------------------------------------------------------


def test_specs_and_module_attributes_match_a_local_import(
    repo: secure_import.Repository,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import faith.shapes  # type: ignore[import-not-found]
        import faith.sub.deep  # type: ignore[import-not-found]
    assert [w for w in caught if issubclass(w.category, ImportWarning)] == []

    pkg, sub, mod = sys.modules["faith"], sys.modules["faith.sub"], sys.modules["faith.shapes"]
    base = repo.url + "faith/"
    assert pkg.__file__ == pkg.__spec__.origin == base + "__init__.py"
    assert pkg.__path__ == pkg.__spec__.submodule_search_locations == [base]
    assert sub.__path__ == [base + "sub/"]
    assert mod.__file__ == base + "shapes.py"
    assert mod.__spec__.submodule_search_locations is None
    assert not hasattr(mod, "__path__")
    for module, parent in ((pkg, "faith"), (sub, "faith.sub"), (mod, "faith")):
        assert module.__spec__.has_location
        assert module.__spec__.parent == parent
        assert module.__package__ == parent
        assert module.__loader__ is module.__spec__.loader
        assert isinstance(module.__loader__, RemoteLoader)
    # __cached__ is derived by importlib from the origin, as for a file.
    assert mod.__cached__ == importlib.util.cache_from_source(mod.__file__)
    assert faith.sub.deep.where().norm2() == 25


def test_error_raised_by_module_code_propagates_and_leaves_nothing_behind(
    repo: secure_import.Repository,
) -> None:
    import faith as pkg

    for attempt in (1, 2):
        with pytest.raises(ZeroDivisionError, match="boom at import") as info:
            importlib.import_module("faith.boom")
        assert "faith.boom" not in sys.modules
        assert not hasattr(pkg, "boom")
        assert pkg.RUNS.count("faith.boom") == attempt  # it really ran, each time
        text = "".join(traceback.format_exception(info.value))
        assert "raise ZeroDivisionError('boom at import')" in text


# -- source --------------------------------------------------------------------


def test_inspect_finds_source_of_modules_classes_functions_and_methods(
    repo: secure_import.Repository,
) -> None:
    import faith.shapes as shapes

    assert inspect.getsource(shapes) == SHAPES
    assert inspect.getfile(shapes) == shapes.__file__
    assert inspect.getsourcefile(shapes.Point) == shapes.__file__
    lines, start = inspect.getsourcelines(shapes.Point)
    assert lines[0] == "@dataclasses.dataclass(frozen=True)\n"
    assert SHAPES.splitlines()[start - 1] == lines[0].rstrip("\n")
    assert inspect.getsource(shapes.area).startswith("def area(width: int, height: int)")
    assert inspect.getsource(shapes.Point.norm2).strip().startswith("def norm2(self)")
    assert inspect.getfile(shapes.Point.norm2) == shapes.__file__
    assert inspect.getdoc(shapes.area).startswith("Area of a rectangle.")


def test_linecache_and_tracebacks_show_remote_lines(repo: secure_import.Repository) -> None:
    import faith.shapes as shapes

    target = "        return self.x * self.x + self.y * self.y\n"
    lineno = SHAPES.splitlines(keepends=True).index(target) + 1
    assert linecache.getline(shapes.__file__, lineno, shapes.__dict__) == target
    try:
        shapes.Point(1, 2).norm2.__func__(None)  # type: ignore[arg-type]
    except AttributeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].filename == shapes.__file__
    assert frames[-1].line == "return self.x * self.x + self.y * self.y"


def test_doctest_finds_and_runs_remote_docstrings(repo: secure_import.Repository) -> None:
    import faith as pkg
    import faith.shapes as shapes

    result = doctest.testmod(shapes, verbose=False, report=False)
    assert result.attempted == 2 and result.failed == 0
    tests = doctest.DocTestFinder().find(shapes)
    assert {t.name for t in tests if t.examples} == {
        "faith.shapes.Point",
        "faith.shapes.area",
    }
    assert all(t.filename == shapes.__file__ for t in tests if t.examples)
    assert doctest.testmod(pkg, report=False).attempted == 1


# -- import system APIs ----------------------------------------------------------


def test_reload_runs_the_verified_body_again_in_the_same_module(
    repo: secure_import.Repository, consumer: Consumer
) -> None:
    import faith as pkg
    import faith.shapes as shapes

    shapes.area = None
    again = importlib.reload(shapes)
    assert again is shapes
    assert shapes.area(2, 5) == 10
    assert pkg.RUNS.count("faith.shapes") == 2
    loads = [r for r in consumer.audit() if r["event"] == "load" and r["module"] == "faith.shapes"]
    assert len(loads) == 2


def test_find_spec_for_remote_names(repo: secure_import.Repository) -> None:
    spec = importlib.util.find_spec("faith.sub.deep")
    assert spec is not None and spec.origin == repo.url + "faith/sub/deep.py"
    assert spec.submodule_search_locations is None
    assert importlib.util.find_spec("faith").submodule_search_locations == [repo.url + "faith/"]
    # Unlisted names under an owned package are refused, never None (fail closed).
    with pytest.raises(NotListedError):
        importlib.util.find_spec("faith.sub.missing")


def test_pkgutil_lists_and_walks_remote_packages(repo: secure_import.Repository) -> None:
    import faith as pkg

    names = {(m.name, m.ispkg) for m in pkgutil.iter_modules(pkg.__path__)}
    assert ("sub", True) in names and ("shapes", False) in names and ("boom", False) in names
    assert all(
        isinstance(m.module_finder, RemotePathEntryFinder)
        for m in pkgutil.iter_modules(pkg.__path__)
    )
    walked = [m.name for m in pkgutil.walk_packages(pkg.__path__, "faith.")]
    assert "faith.sub.deep" in walked and "faith.sub.plain" in walked
    assert "faith.boom" not in sys.modules  # only packages are imported while walking


def test_run_module_executes_a_remote_module_as_main(repo: secure_import.Repository) -> None:
    result = runpy.run_module("faith.cli", run_name="__main__", alter_sys=False)
    assert result["RESULT"] == ("ran as", "__main__", repo.url + "faith/cli.py")
    assert "cli-main" in sys.modules["faith"].RUNS


def test_path_hook_claims_only_https_entries(tmp_path: Path) -> None:
    with pytest.raises(ImportError):
        path_hook(str(tmp_path))
    with pytest.raises(ImportError):
        path_hook("http://example.org/pkg/")
    assert isinstance(path_hook("https://example.org/pkg/"), RemotePathEntryFinder)
    # An https entry no repository serves finds nothing and makes no request.
    finder = path_hook("https://example.invalid/pkg/")
    assert finder.find_spec("pkg.x") is None
    assert list(finder.iter_modules()) == []


def test_local_imports_are_not_routed_through_the_hook(
    repo: secure_import.Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "localmod_faith.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("localmod_faith")
    assert module.__file__ == str(tmp_path / "localmod_faith.py")
    assert not isinstance(sys.path_importer_cache.get(str(tmp_path)), RemotePathEntryFinder)
    del sys.modules["localmod_faith"]


# -- objects -----------------------------------------------------------------------


def test_pickle_and_copy_of_remote_classes_functions_and_instances(
    repo: secure_import.Repository,
) -> None:
    from faith.shapes import Point, area

    point = Point(1, 2, ["a"])
    assert pickle.loads(pickle.dumps(point)) == point
    assert pickle.loads(pickle.dumps(Point)) is Point
    assert pickle.loads(pickle.dumps(area)) is area
    assert copy.deepcopy(point) == point and copy.copy(point) == point
    import cloudpickle  # a test dependency: issue 4 names it

    assert cloudpickle.loads(cloudpickle.dumps(area))(3, 3) == 9
    assert cloudpickle.loads(cloudpickle.dumps(point)) == point


def test_dataclasses_and_type_hints_over_remote_modules(
    repo: secure_import.Repository,
) -> None:
    from faith.shapes import Point, area

    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags"]
    assert typing.get_type_hints(Point) == {"x": int, "y": int, "tags": list[str]}
    assert typing.get_type_hints(area) == {"width": int, "height": int, "return": int}
    assert dataclasses.replace(Point(1, 2), y=5).y == 5


# -- threads -------------------------------------------------------------------------


def test_threads_importing_at_once_run_each_body_exactly_once(
    repo: secure_import.Repository,
) -> None:
    import faith as pkg

    names = [f"faith.{n}" for n in SLOW_NAMES]
    start = threading.Barrier(16)
    results: list[object] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        start.wait()
        for name in names[index % 4 :] + names[: index % 4]:
            value = importlib.import_module(name).VALUE
            with lock:
                results.append(value)
        try:
            importlib.import_module("faith.boom")
        except ZeroDivisionError:
            with lock:
                results.append("boom")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert sorted(r for r in results if r != "boom") == sorted(names * 16)
    assert results.count("boom") == 16
    for name in names:
        assert pkg.RUNS.count(name) == 1
    assert "faith.boom" not in sys.modules


# -- libraries with import tricks ------------------------------------------------------


def test_library_installing_its_own_meta_path_importer_keeps_working(
    repo: secure_import.Repository, clean_meta_path: None
) -> None:
    import faith.metaimp  # type: ignore[import-not-found]
    import faith.virtual  # type: ignore[import-not-found]

    assert faith.virtual is sys.modules["faith.shapes"]
    assert faith.virtual.area(2, 2) == 4
    appended = importlib.import_module("faith.appended")  # unlisted: its importer wins
    assert appended is sys.modules["faith.shapes"]
    with pytest.raises(NotListedError):
        importlib.import_module("faith.still_missing")


def test_library_aliasing_a_remote_path_loads_under_the_alias(
    repo: secure_import.Repository, clean_meta_path: None
) -> None:
    import faith.aliasing  # type: ignore[import-not-found]  # noqa: F401

    plain = importlib.import_module("faith_alias.plain")
    assert plain.NAME == "faith_alias.plain"
    assert plain.__file__ == repo.url + "faith/sub/plain.py"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("faith_alias.nothing")
