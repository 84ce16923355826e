"""Which top-level names a source tree imports (static analysis, publisher side).

``secure-import sign`` refuses to sign a tree whose code imports a name that
is neither provided by the tree nor declared as a dependency (nor listed as
expected from the consumer's own environment).  The names are found by reading
every ``.py`` file's syntax tree, never by running it.

What it sees:

- ``import a.b.c`` and ``from a.b import c`` (absolute imports): top name ``a``;
- ``importlib.import_module("a.b")``, ``__import__("a")`` and a bare
  ``import_module("a")`` when the file imported it from ``importlib``, with a
  string literal as the first argument;
- where the import is: an import inside a ``try`` block whose handlers catch
  ``ImportError``, ``ModuleNotFoundError``, ``Exception``, ``BaseException`` or
  everything is *optional* (the code copes with its absence); every other
  import, at module level or inside a function, is *required*;
- ``if TYPE_CHECKING:`` blocks are skipped: they never run.

What it cannot see: names computed at run time (``import_module(name)``,
plugin registries, entry points), imports inside strings given to ``exec``
or ``compile``, imports made through a wrapper other than the two above
(a library's own ``import_module`` helper), and code that catches the import
failure further up the call stack.  Relative imports (``from . import x``)
stay inside the package and are not dependencies.  The consumer-side checks do
not rely on this analysis: it only stops a publisher from signing an obvious
omission.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secure_import.verify.names import is_never_remote

__all__ = ["ImportScan", "scan_imports"]

_CATCHES_IMPORT = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass
class ImportScan:
    """Top-level names a tree imports, and where (``path:line``)."""

    required: dict[str, list[str]] = field(default_factory=dict)
    optional: dict[str, list[str]] = field(default_factory=dict)
    #: Files that could not be parsed (not Python 3 syntax): not analysed.
    unparsed: list[str] = field(default_factory=list)

    def outside(self, known: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """``(required, optional)`` names not in ``known``, the standard
        library or the never-remote names."""
        skip = set(known)

        def keep(found: dict[str, list[str]]) -> dict[str, list[str]]:
            return {
                name: where
                for name, where in sorted(found.items())
                if name not in skip and not is_never_remote(name) and name != "__future__"
            }

        required = keep(self.required)
        optional = {n: w for n, w in keep(self.optional).items() if n not in required}
        return required, optional


def _handler_catches_import(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    if caught is None:
        return True
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    for item in names:
        name = item.id if isinstance(item, ast.Name) else getattr(item, "attr", None)
        if name in _CATCHES_IMPORT:
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _literal_module(call: ast.Call, bare_import_module: bool) -> str | None:
    func = call.func
    is_import = (
        (isinstance(func, ast.Name) and func.id == "__import__")
        or (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and isinstance(func.value, ast.Name)
            and func.value.id == "importlib"
        )
        or (bare_import_module and isinstance(func, ast.Name) and func.id == "import_module")
    )
    if not is_import or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        text: str = first.value
        if text and not text.startswith("."):
            return text
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, rel: str, scan: ImportScan, bare_import_module: bool) -> None:
        self.rel = rel
        self.scan = scan
        self.bare = bare_import_module
        self.guarded = 0

    def _add(self, dotted: str, node: ast.AST) -> None:
        top = dotted.partition(".")[0]
        if not top:
            return
        target = self.scan.optional if self.guarded else self.scan.required
        target.setdefault(top, []).append(f"{self.rel}:{getattr(node, 'lineno', 0)}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module, node)

    def visit_Call(self, node: ast.Call) -> None:
        found = _literal_module(node, self.bare)
        if found is not None:
            self._add(found, node)
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_handler_catches_import(h) for h in node.handlers)
        if guarded:
            self.guarded += 1
        for child in node.body:
            self.visit(child)
        if guarded:
            self.guarded -= 1
        for handler in node.handlers:
            self.visit(handler)
        for child in [*node.orelse, *node.finalbody]:
            self.visit(child)

    visit_TryStar = visit_Try  # type: ignore[assignment]


def _imports_import_module(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "importlib"
        and any(a.name == "import_module" for a in node.names)
        for node in ast.walk(tree)
    )


def scan_imports(sources: Mapping[str, bytes | Path]) -> ImportScan:
    """Scan the ``.py`` files among ``sources`` (relative path -> bytes or file)."""
    scan = ImportScan()
    for rel in sorted(sources):
        if not rel.endswith(".py"):
            continue
        data = sources[rel]
        text = data.read_bytes() if isinstance(data, Path) else data
        try:
            tree = ast.parse(text, filename=rel)
        except (SyntaxError, ValueError):
            scan.unparsed.append(rel)
            continue
        _Visitor(rel, scan, _imports_import_module(tree)).visit(tree)
    return scan
