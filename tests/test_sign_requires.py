"""The publisher side of dependencies: ``secure-import sign`` finds the names
the code imports (static analysis), signs declarations into a v2 manifest,
takes ranges from ``Requires-Dist``, and refuses names that are neither
provided, declared nor local (nothing is written then)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from secure_import.config import MANIFEST_NAME
from secure_import.errors import ConfigError, KeyFileError
from secure_import.publish.imports import scan_imports
from secure_import.publish.sign import publish
from secure_import.store.keyfiles import (
    generate_keypair,
    load_private_key_file,
    load_public_key_file,
)

from .clirunner import run_cli, run_json


def code(text: str) -> bytes:
    return textwrap.dedent(text).encode()


def test_scan_sees_absolute_imports_and_literal_import_calls() -> None:
    scan = scan_imports(
        {
            "pkg/__init__.py": code(
                """
                import os, mpmath.libmp as lm
                from numbers import Number
                from gmpy2 import mpz
                from . import sibling
                from .inner import x
                import importlib
                importlib.import_module("plugin_a.sub")
                __import__("plugin_b")
                importlib.import_module(".relative", __package__)
                """
            ),
            "pkg/lazy.py": code(
                """
                from importlib import import_module
                def f():
                    import scipy
                    return import_module("plugin_c")
                """
            ),
            "pkg/data.txt": b"import not_python\n",
        }
    )
    assert set(scan.required) == {
        "os",
        "mpmath",
        "numbers",
        "gmpy2",
        "importlib",
        "plugin_a",
        "plugin_b",
        "scipy",
        "plugin_c",
    }
    assert scan.required["mpmath"] == ["pkg/__init__.py:2"]
    assert scan.optional == {}


def test_scan_calls_guarded_imports_optional_and_skips_type_checking() -> None:
    scan = scan_imports(
        {
            "m.py": code(
                """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    import only_for_types
                else:
                    import at_runtime
                try:
                    import numpy
                except ImportError:
                    numpy = None
                try:
                    import fast
                except (ValueError, ModuleNotFoundError):
                    pass
                try:
                    import must_exist
                except ValueError:
                    pass
                try:
                    pass
                except ImportError:
                    import fallback
                """
            )
        }
    )
    required, optional = scan.outside(["m"])
    assert set(required) == {"at_runtime", "must_exist", "fallback"}
    assert set(optional) == {"numpy", "fast"}
    assert "only_for_types" not in scan.required and "only_for_types" not in scan.optional


def test_scan_reports_files_it_cannot_parse() -> None:
    scan = scan_imports({"old.py": b"print 'python 2'\n", "ok.py": b"import x\n"})
    assert scan.unparsed == ["old.py"]
    assert set(scan.required) == {"x"}


def test_scan_excludes_stdlib_own_names_and_never_remote_names() -> None:
    scan = scan_imports(
        {"p.py": b"import os, sys, p, secure_import, sitecustomize, __future__, third\n"}
    )
    assert scan.outside(["p"]) == ({"third": ["p.py:1"]}, {})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sym").mkdir(parents=True)
    (src / "sym" / "__init__.py").write_text("import mpmath\nfrom mpmath import mpf\n")
    dist = src / "sym-1.13.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sym\nVersion: 1.13\n"
        "Requires-Dist: mpmath<1.4,>=1.1.0\n"
        'Requires-Dist: pytest>=7; extra == "dev"\n'
    )
    return src


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name in ("sym", "mp"):
        private, public = generate_keypair(name, tmp_path / "keys")
        out[name], out[name + ".pub"] = private, public
    return out


def write_requires(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "deps.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_sign_refuses_an_undeclared_import_and_writes_nothing(
    tree: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "site"
    with pytest.raises(ConfigError) as info:
        publish(tree, out, private_keys=[load_private_key_file(keys["sym"])])
    assert info.value.check == "undeclared-imports"
    assert "mpmath (sym/__init__.py:1, sym/__init__.py:2)" in str(info.value)
    assert not out.exists() or not any(out.iterdir())


def test_sign_writes_a_v2_manifest_with_the_range_from_requires_dist(
    tree: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    deps = write_requires(
        tmp_path,
        f"""
        [requires.mpmath]
        repository = "https://mpmath.example/repo"
        keys = ["{keys["mp.pub"].name}"]
        """,
    )
    (tmp_path / keys["mp.pub"].name).write_bytes(keys["mp.pub"].read_bytes())
    result = publish(
        tree, tmp_path / "site", private_keys=[load_private_key_file(keys["sym"])], requires=deps
    )
    req = result.manifest.requires["mpmath"]
    assert str(req.versions) == "<1.4,>=1.1.0"
    assert req.repository == "https://mpmath.example/repo/"
    assert req.key_ids == {load_public_key_file(keys["mp.pub"]).key_id}
    assert result.requires_sources == {"mpmath": "Requires-Dist"}
    signed = json.loads((tmp_path / "site" / MANIFEST_NAME).read_bytes())
    assert signed["payloadType"]  # an envelope, re-parsed by publish() itself


def test_an_explicit_range_and_local_imports(
    tree: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    (tree / "sym" / "extra.py").write_text(
        "import numpy\ntry:\n    import gmpy2\nexcept ImportError:\n    pass\n"
    )
    deps = write_requires(
        tmp_path,
        f"""
        [requires.mpmath]
        repository = "https://mpmath.example/repo/"
        keys = ["{keys["mp.pub"]}"]
        manifest_versions = ">=3"

        [imports]
        local = ["numpy"]
        """,
    )
    result = publish(
        tree, tmp_path / "site", private_keys=[load_private_key_file(keys["sym"])], requires=deps
    )
    assert str(result.manifest.requires["mpmath"].manifest_versions) == ">=3"
    assert "numpy" not in result.manifest.requires
    assert set(result.optional_imports) == {"gmpy2"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[requires.mpmath]\nrepository = "http://x/"\nkeys = ["K"]\n', "https"),
        ('[requires.mpmath]\nkeys = ["K"]\n', "repository is required"),
        ('[requires.mpmath]\nrepository = "https://x/"\nkeys = ["K"]\nextra = 1\n', "unknown key"),
        (
            '[requires.mpmath]\nrepository = "https://x/"\nkeys = ["K"]\n'
            'versions = ">=1"\nmanifest_sha256 = "' + "0" * 64 + '"\n',
            "one of",
        ),
        (
            '[requires.mpmath]\nrepository = "https://x/"\nkeys = ["K"]\nversions = "new"\n',
            "clause",
        ),
        ('[requires.sym]\nrepository = "https://x/"\nkeys = ["K"]\nversions = ">=1"\n', "provided"),
        ('[requires.os]\nrepository = "https://x/"\nkeys = ["K"]\n', "can come from a repository"),
        ("[other]\n", "unknown table"),
    ],
)
def test_bad_declarations_files_are_refused(
    tree: Path, keys: dict[str, Path], tmp_path: Path, body: str, message: str
) -> None:
    deps = write_requires(tmp_path, body.replace('"K"', f'"{keys["mp.pub"]}"'))
    with pytest.raises(ConfigError, match=message):
        publish(
            tree,
            tmp_path / "site",
            private_keys=[load_private_key_file(keys["sym"])],
            requires=deps,
        )


def test_a_declaration_needs_a_loadable_publisher_key(
    tree: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    deps = write_requires(
        tmp_path, '[requires.mpmath]\nrepository = "https://x/"\nkeys = ["missing.pub"]\n'
    )
    with pytest.raises(KeyFileError):
        publish(
            tree,
            tmp_path / "site",
            private_keys=[load_private_key_file(keys["sym"])],
            requires=deps,
        )


def test_cli_sign_with_requires_and_local_import(
    tree: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    (tree / "sym" / "np.py").write_text("import numpy\n")
    deps = write_requires(
        tmp_path,
        f'[requires.mpmath]\nrepository = "https://mpmath.example/"\nkeys = ["{keys["mp.pub"]}"]\n',
    )
    refused = run_cli(tmp_path, "sign", tree, "--key", keys["sym"], "--out", tmp_path / "site")
    assert refused.returncode == 1 and "undeclared-imports" in refused.stderr
    signed = run_json(
        tmp_path,
        "sign",
        tree,
        "--key",
        keys["sym"],
        "--out",
        tmp_path / "site",
        "--requires",
        deps,
        "--local-import",
        "numpy",
    )
    assert signed["spec_version"] == 3  # v1 + bundles + requires
    assert "<1.4,>=1.1.0" in signed["requires"]["mpmath"]
