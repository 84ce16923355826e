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


def _visit(tree: ast.Module, rel: str, scan: ImportScan, bare_import_module: bool) -> None:
    """Record every import under ``tree``.  An explicit stack, not recursion:
    generated code (a giant expression) nests deeper than Python's stack."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, guarded = stack.pop()
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found = [node.module]
        elif isinstance(node, ast.Call):
            literal = _literal_module(node, bare_import_module)
            if literal is not None:
                found = [literal]
        for dotted in found:
            top = dotted.partition(".")[0]
            if top:
                target = scan.optional if guarded else scan.required
                target.setdefault(top, []).append(f"{rel}:{getattr(node, 'lineno', 0)}")
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: list[tuple[ast.AST, bool]] = [(child, guarded) for child in node.orelse]
        elif isinstance(node, ast.Try | ast.TryStar):
            inner = guarded or any(_handler_catches_import(h) for h in node.handlers)
            children = [(child, inner) for child in node.body]
            children += [
                (child, guarded) for child in [*node.handlers, *node.orelse, *node.finalbody]
            ]
        else:
            children = [(child, guarded) for child in ast.iter_child_nodes(node)]
        stack.extend(reversed(children))


def _imports_import_module(tree: ast.Module) -> bool:
    # ast.walk is iterative (a queue), safe on deep trees.
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
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            scan.unparsed.append(rel)
            continue
        _visit(tree, rel, scan, _imports_import_module(tree))
    return scan
