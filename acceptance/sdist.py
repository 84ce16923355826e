"""Download a pinned sdist and lay out its importable tree and its tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from libraries import Library


def fetch_sdist(lib: Library, downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"{re.escape(lib.name)}-{re.escape(lib.version)}\.tar\.gz", re.I)
    found = [p for p in downloads.iterdir() if pattern.fullmatch(p.name.replace("_", "-"))]
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{lib.name}=={lib.version}",
                "-d",
                str(downloads),
            ],
            check=True,
        )
        found = [p for p in downloads.iterdir() if pattern.fullmatch(p.name.replace("_", "-"))]
    (sdist,) = found
    return sdist


def _extract(archive: tarfile.TarFile, dest: Path) -> None:
    """Extract an sdist with the "data" filter, or, on interpreters that
    predate it (Debian 12's Python 3.11.2; it came in 3.11.4), after the same
    refusals done by hand: only files and directories, inside ``dest``."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise SystemExit(f"refusing sdist member {member.name!r} ({member.type!r})")
    archive.extractall(dest)  # noqa: S202 - every member checked above


def prepare(lib: Library, work: Path, downloads: Path) -> tuple[Path, Path]:
    """Extract; build the code tree (with .dist-info) and the test directory."""
    base = work / lib.name
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    with tarfile.open(fetch_sdist(lib, downloads)) as archive:
        _extract(archive, base / "sdist")
    (root,) = (base / "sdist").iterdir()
    tree, tests = base / "tree", base / "tests"
    tree.mkdir()
    tests.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for rel in lib.code:
        source = root / rel
        if source.is_dir():
            shutil.copytree(source, tree / source.name, ignore=skip)
        else:
            shutil.copy2(source, tree / source.name)
    for rel in lib.exclude:
        shutil.rmtree(tree / Path(rel).relative_to(Path(lib.code[0]).parent))
    for pattern in lib.exclude_globs:
        for found in sorted(tree.glob(pattern), reverse=True):
            if found.is_dir():
                shutil.rmtree(found)
    dist_info = tree / f"{lib.name}-{lib.version}.dist-info"
    dist_info.mkdir()
    shutil.copy2(root / "PKG-INFO", dist_info / "METADATA")
    (dist_info / "top_level.txt").write_text("\n".join(lib.tops) + "\n")
    for rel, dest in lib.tests.items():
        source, target = root / rel, tests / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=skip)
        else:
            shutil.copy2(source, target)
    for test_file in tests.rglob("*.py"):
        if lib.test_rewrites:
            text = test_file.read_text()
            for old, new in lib.test_rewrites.items():
                text = text.replace(old, new)
            test_file.write_text(text)
        if lib.exclude_globs and test_file.name == "__init__.py":
            test_file.unlink()  # test folders become plain directories (no package)
    for rel, dest in lib.test_data.items():
        (tests / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, tests / dest)
    (tests / "pytest.ini").write_text("[pytest]\n" + lib.pytest_ini)
    return tree, tests
