"""The import contracts in pyproject.toml bite: a copy of the package with one
forbidden import injected fails ``lint-imports``, naming the import.

scripts/check runs ``lint-imports`` on the real tree; these tests show that a
pass there means something.  Each runs import-linter on a throwaway copy of
``secure_import`` (put first on ``PYTHONPATH``, so the copy is what gets
analysed, not the installed package) with the project's own contracts, and
first checks that the unchanged copy passes, so a failure can only come from
the injected line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_RUN = (
    "import sys; from importlinter.cli import lint_imports_command; "
    "sys.exit(lint_imports_command())"
)

pytest.importorskip("importlinter", reason="import-linter is in the test extra")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-c", _RUN, "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and of pyproject.toml (the contracts)."""
    shutil.copytree(
        ROOT / "secure_import",
        tmp_path / "secure_import",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = _lint(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 broken" in clean.stdout
    return tmp_path


def _inject(module: Path, line: str) -> None:
    """Add ``line`` right after the ``from __future__`` import of ``module``."""
    text = module.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text
    module.write_text(text.replace(marker, marker + line + "\n", 1))


def test_verify_module_importing_httpx_breaks_the_purity_contract(tree: Path) -> None:
    _inject(tree / "secure_import" / "verify" / "hashes.py", "import httpx")
    result = _lint(tree)
    assert result.returncode == 1
    assert "The verify layer is pure" in result.stdout
    assert "secure_import.verify.hashes -> httpx" in result.stdout


def test_verify_module_importing_the_store_breaks_both_contracts(tree: Path) -> None:
    _inject(
        tree / "secure_import" / "verify" / "trust.py",
        "from secure_import.store.paths import Paths  # noqa: F401",
    )
    result = _lint(tree)
    assert result.returncode == 1
    assert "0 kept, 2 broken" in result.stdout
    assert "secure_import.verify.trust -> secure_import.store.paths" in result.stdout


def test_lower_layer_importing_a_higher_one_breaks_the_layers_contract(tree: Path) -> None:
    """The old cycle (lock.py importing Repository) cannot come back."""
    _inject(
        tree / "secure_import" / "store" / "lock.py",
        "from secure_import.repository import Repository  # noqa: F401",
    )
    result = _lint(tree)
    assert result.returncode == 1
    assert "The folder list is the layer list BROKEN" in result.stdout
    assert "secure_import.store.lock -> secure_import.repository" in result.stdout


def test_new_top_level_module_without_a_layer_is_refused(tree: Path) -> None:
    (tree / "secure_import" / "helpers.py").write_text('"""Placeless."""\n')
    result = _lint(tree)
    assert result.returncode == 1
    assert "The following modules are not listed as layers" in result.stdout
    assert "- secure_import.helpers" in result.stdout
