"""A package index for the pip and uv rows: wheels plus a PEP 503 simple index.

:func:`build_wheel` writes a pure-Python wheel of a package directory with
``zipfile`` (no build backend, no network), so the quick mode stays offline;
the sympy rows use the real wheels downloaded at bench time instead.
:func:`write_index` lays out ``<root>/simple/<project>/index.html`` pages
linking ``<root>/files/<wheel>#sha256=...``, which ``server.BenchServer``
serves over loopback HTTPS (with ``index_pages=True`` it answers a directory
URL with its ``index.html``), so pip and uv fetch exactly what a private
index would give them: one page per project, then the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import shutil
import zipfile
from pathlib import Path

__all__ = ["build_wheel", "normalize", "write_index"]


def normalize(name: str) -> str:
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(
    package_dir: Path, out_dir: Path, version: str = "1.0", requires: list[str] | None = None
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``package_dir``
    (``requires``: its ``Requires-Dist`` lines)."""
    name = package_dir.name
    dist_info = f"{name}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            entries.append(
                (f"{name}/{path.relative_to(package_dir).as_posix()}", path.read_bytes())
            )
    entries.append(
        (
            f"{dist_info}/METADATA",
            (
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                + "".join(f"Requires-Dist: {r}\n" for r in requires or [])
            ).encode(),
        )
    )
    entries.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: secure-import-bench\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, data in entries:
            zf.writestr(
                zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)),
                data,
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return wheel


def write_index(root: Path, wheels: list[Path]) -> Path:
    """Copy ``wheels`` to ``root/files`` and write the simple index; return ``root``."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        target = files / wheel.name
        if wheel.resolve() != target.resolve():
            shutil.copyfile(wheel, target)
        projects.setdefault(normalize(wheel.name.split("-")[0]), []).append(target)
    simple = root / "simple"
    simple.mkdir(exist_ok=True)
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    for project, paths in projects.items():
        page = simple / project
        page.mkdir(exist_ok=True)
        anchors = "".join(
            f'<a href="../../files/{html.escape(p.name)}#sha256='
            f'{hashlib.sha256(p.read_bytes()).hexdigest()}">{html.escape(p.name)}</a>\n'
            for p in paths
        )
        (page / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{anchors}</body></html>\n"
        )
    return root
