"""The libraries the acceptance run tests, and how each sdist maps to code and tests."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    #: the library reads data next to ``__file__``: the remote run uses
    #: materialise mode, and a third run in URL mode shows what breaks without.
    materialise: bool = False
    #: the tests start child interpreters (``sys.executable``, multiprocessing
    #: spawn/forkserver/fork): both runs use a real virtual environment without
    #: ``-S`` where secure_import is installed, so its start-up hook is active.
    children: bool = False
    #: extra pytest arguments (both runs).
    pytest_args: list[str] = field(default_factory=list)


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
    Library(
        "pytz",
        "2025.2",
        "reads its zoneinfo files via os.path.join(dirname(__file__), ...), also "
        "at import time (all_timezones); materialise mode",
        code=["pytz"],
        tests={"pytz/tests": "t/tests"},
        exclude=["pytz/tests"],
        # test_docs.py opens README.rst two directories above itself.
        test_data={"README.rst": "README.rst"},
        tops=["pytz"],
        # Python 2 only (the PY2 branch); pkg_resources is optional.
        local_imports=["sets", "pkg_resources"],
        materialise=True,
    ),
    Library(
        "parso",
        "0.8.4",
        "loads its grammar files from dirname(__file__); materialise mode",
        code=["parso"],
        tests={"test": "test", "conftest.py": "conftest.py"},
        pytest_ini=(
            "testpaths = test\nnorecursedirs = .* normalizer_issue_files\n"
            "usefixtures = clean_parso_cache\n"
        ),
        tops=["parso"],
        materialise=True,
    ),
    Library(
        "pebble",
        "5.1.1",
        "process pools with the spawn, forkserver and fork start methods: children "
        "unpickle pebble's own functions (real venv, .pth start-up hook)",
        code=["pebble"],
        tests={"test": "test"},
        tops=["pebble"],
        children=True,
        # The process tests, for each start method.  The thread-only tests are
        # left out: not about child interpreters, and test_pebble.py's
        # waitforthreads test hangs on this interpreter with or without
        # secure_import.
        pytest_args=[
            f"test/test_{kind}_{method}.py"
            for kind in ("process_pool", "concurrent_process", "asynchronous_process")
            for method in ("spawn", "forkserver", "fork")
        ],
    ),
]
#: The CI run (``--quick``): a single module and a materialised package, ~15 s.
QUICK = ("six", "pytz")
