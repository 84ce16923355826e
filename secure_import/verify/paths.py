"""Safety rules for the paths a manifest lists (pure: strings in, verdicts out).

Shared by the manifest parser (:mod:`secure_import.verify.manifest`), the
bundle listing (:mod:`secure_import.verify.bundle`) and the publisher, so a
tree that signs is a tree that imports.  Rules for one path
(:func:`path_problem`): ASCII, relative, no empty, ``.`` or ``..``
component, no backslash, ``%``, ``:``, NUL or control character, bounded
length, identifiers only for ``.py`` files, no compiled or magic files
(``.so``, ``.pyd``, ``.pyc``, ``.pth``...) (THREATS F4, F5, F7).  Rules for
the whole list (:func:`check_layout`): no two paths equal after case
folding, no file that is also a directory, no module listed both as
``a/b.py`` and ``a/b/__init__.py`` (F6), every path under a provided name or
a ``NAME-VERSION.dist-info`` directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from secure_import.errors import UnsafePathError

__all__ = [
    "DIST_INFO",
    "MAX_COMPONENT_LENGTH",
    "MAX_PATH_LENGTH",
    "check_layout",
    "check_path",
    "is_identifier",
    "path_problem",
    "refuse_path",
    "show",
]

MAX_PATH_LENGTH = 1024
MAX_COMPONENT_LENGTH = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATA_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
#: A top-level ``NAME-VERSION.dist-info`` directory.
DIST_INFO = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*-[A-Za-z0-9_.+!]+\.dist-info")
# Extensions of compiled code or of files the interpreter acts on by itself;
# refused wherever they appear in a name ("x.so", "libx.so.1", "x.pyc").
_REFUSED_SUFFIXES = frozenset({"so", "pyd", "pyc", "pyo", "pth", "dll", "dylib", "exe"})
_FORBIDDEN_CHARS = frozenset("\\%:")


def is_identifier(name: str) -> bool:
    """An ASCII Python identifier (keywords included)."""
    return name.isascii() and name.isidentifier()


def show(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_problem(path: object) -> str | None:
    """Why ``path`` is unsafe on its own, or None if it is acceptable."""
    if not isinstance(path, str):
        return "not a string"
    if not path:
        return "empty path"
    if len(path) > MAX_PATH_LENGTH:
        return f"longer than {MAX_PATH_LENGTH} characters"
    if not path.isascii():
        return "non-ASCII character"
    if _CONTROL.search(path):
        return "NUL or control character"
    if _FORBIDDEN_CHARS.intersection(path):
        return "backslash, '%' or ':'"
    if path.startswith("/"):
        return "absolute path"
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "empty, '.' or '..' component"
        if len(part) > MAX_COMPONENT_LENGTH:
            return f"component longer than {MAX_COMPONENT_LENGTH} characters"
        lowered = part.lower()
        if _REFUSED_SUFFIXES.intersection(lowered.split(".")[1:]) or ".cpython-" in lowered:
            return "compiled or interpreter-magic file type"
        if lowered == "__pycache__":
            return "__pycache__ directory"
        if part.endswith("."):
            return "component ending with '.'"
    if path.endswith(".py"):
        *dirs, last = parts
        for name in (*dirs, last[:-3]):
            if not is_identifier(name):
                return "a .py path must consist of Python identifiers"
        if "__init__" in dirs:
            return "__init__ used as a directory"
        return None
    if path.lower().endswith(".py"):
        return "mixed-case .py suffix"
    if len(parts) < 2:
        return "a data file must be inside a package or .dist-info directory"
    first, rest = parts[0], parts[1:]
    if DIST_INFO.fullmatch(first) is None:
        if not is_identifier(first):
            return "top-level directory is neither a package name nor NAME-VERSION.dist-info"
        rest = parts
    for part in rest:
        if _DATA_COMPONENT.fullmatch(part) is None:
            return "data file components may only use A-Z a-z 0-9 . _ + - and not start with . or -"
    return None


def refuse_path(path: object, reason: str, url: str | None) -> UnsafePathError:
    """The error that refuses a whole manifest for one unsafe ``path``."""
    return UnsafePathError(f"unsafe path {show(path)}: {reason}", check="path", url=url)


def check_path(path: str) -> None:
    """Check one manifest path on its own (the whole-manifest rules are in :func:`parse`).

    Raises:
        UnsafePathError: naming ``path`` and the rule it breaks.
    """
    problem = path_problem(path)
    if problem is not None:
        raise refuse_path(path, problem, None)


def check_layout(paths: Iterable[str], provides: tuple[str, ...], url: str | None) -> None:
    """Whole-manifest path rules: collisions, shadowing, provided names."""
    folded: dict[str, str] = {}
    for path in paths:
        key = path.casefold()
        other = folded.get(key)
        if other is not None:
            raise refuse_path(path, f"collides with {show(other)} after case folding", url)
        folded[key] = path

    directories: set[str] = set()
    for key in folded:
        parts = key.split("/")
        for end in range(1, len(parts)):
            directories.add("/".join(parts[:end]))
    provided = set(provides)
    for key, path in folded.items():
        if key in directories:
            raise refuse_path(path, "listed as a file and also used as a directory", url)
        if key.endswith(".py") and key.rpartition("/")[2] != "__init__.py":
            package_init = key[:-3] + "/__init__.py"
            if package_init in folded:
                raise refuse_path(
                    path, f"module also listed as package {show(folded[package_init])}", url
                )
        head, slash, _ = path.partition("/")
        if slash and DIST_INFO.fullmatch(head):
            continue
        top = head if slash else head.removesuffix(".py")
        if top not in provided:
            raise refuse_path(path, f"top-level name {top!r} is not in provides", url)
