"""Generate benchmark packages: ``benchpkg<N>`` with N modules of about 100 lines.

The package is flat (``__init__`` plus ``m001`` .. ``m<N-1>``) so every importer
under test can load it; the modules import each other the way real code does:
``__init__`` imports every module, and each module imports one or two earlier
siblings with relative imports.  Only intra-package and built-in imports are
used, so no variant pays for standard-library modules another variant already
loaded.  ``benchpkg<N>.check()`` returns a number the generator also computes,
which the harness compares to prove the whole package ran.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["expected_check", "generate", "package_name"]


def package_name(n: int) -> str:
    return f"benchpkg{n}"


def _module_value(i: int) -> int:
    """What ``m<i>.value()`` returns (mirrors the generated code)."""
    total = sum((i * k) % 7 for k in range(20))
    return total + i


def expected_check(n: int) -> int:
    """What ``benchpkg<n>.check()`` returns once every module has run."""
    return sum(_module_value(i) for i in range(1, n)) + n


def _module_source(i: int) -> str:
    deps = [d for d in (i - 1, i // 2) if d >= 1 and d != i]
    deps = sorted(set(deps))
    imports = "\n".join(f"from . import m{d:03d}" for d in deps)
    dep_calls = " + ".join(f"m{d:03d}.helper_{d}(0)" for d in deps) or "0"
    lines = [
        f'"""Generated benchmark module number {i}.',
        "",
        "It defines a small class, a few functions and constants, the way a",
        "typical library module does, so compiling it costs what real code costs.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import sys",
        "",
        imports,
        "",
        f"CONSTANT_{i} = {i}",
        f"NAME_{i} = 'module-{i}'",
        f"TABLE_{i} = {{" + ", ".join(f"'k{k}': {k * i}" for k in range(8)) + "}",
        "",
        "",
        f"class Thing{i}:",
        f'    """A record with a few methods (module {i})."""',
        "",
        "    __slots__ = ('name', 'size', 'items')",
        "",
        "    def __init__(self, name: str, size: int = 0) -> None:",
        "        self.name = name",
        "        self.size = size",
        "        self.items: list[int] = []",
        "",
        "    def add(self, value: int) -> Thing{i}:".replace("{i}", str(i)),
        "        if value < 0:",
        "            raise ValueError(f'negative value: {value}')",
        "        self.items.append(value)",
        "        self.size += 1",
        "        return self",
        "",
        "    def total(self) -> int:",
        "        return sum(self.items)",
        "",
        "    def describe(self) -> str:",
        "        parts = [self.name, str(self.size), str(self.total())]",
        "        return ' / '.join(parts)",
        "",
        "    def __repr__(self) -> str:",
        f"        return f'Thing{i}({{self.name!r}}, size={{self.size}})'",
        "",
        "    def __eq__(self, other: object) -> bool:",
        f"        if not isinstance(other, Thing{i}):",
        "            return NotImplemented",
        "        return (self.name, self.items) == (other.name, other.items)",
        "",
        "",
        f"def helper_{i}(x: int) -> int:",
        f'    """Used by later modules (module {i})."""',
        f"    return x + CONSTANT_{i}",
        "",
        "",
        "def compute() -> int:",
        f"    thing = Thing{i}(NAME_{i})",
        "    for k in range(20):",
        f"        thing.add((CONSTANT_{i} * k) % 7)",
        "    return thing.total()",
        "",
        "",
        "def value() -> int:",
        f"    deps = {dep_calls}",
        f"    return compute() + deps - ({dep_calls}) + CONSTANT_{i}",
        "",
        "",
        "def transform(values: list[int]) -> list[int]:",
        "    out = []",
        "    for item in values:",
        "        if item % 2:",
        "            out.append(item * 3 + 1)",
        "        else:",
        "            out.append(item // 2)",
        "    return out",
        "",
        "",
        "def lookup(key: str, default: int = -1) -> int:",
        f"    return TABLE_{i}.get(key, default)",
        "",
        "",
        "def platform_note() -> str:",
        f"    return sys.platform + '-' + NAME_{i}",
        "",
        "",
        "def summarise(things: list[Thing" + str(i) + "]) -> dict[str, int]:",
        "    summary: dict[str, int] = {}",
        "    for thing in things:",
        "        summary[thing.name] = summary.get(thing.name, 0) + thing.total()",
        "    return summary",
        "",
        "",
        "def _private_helper(a: int, b: int) -> int:",
        "    while b:",
        "        a, b = b, a % b",
        "    return a",
        "",
        "",
        f"__all__ = ['Thing{i}', 'compute', 'helper_{i}', 'lookup', 'summarise', 'value']",
    ]
    return "\n".join(lines) + "\n"


def _init_source(n: int) -> str:
    names = [f"m{i:03d}" for i in range(1, n)]
    lines = [
        f'"""Generated benchmark package with {n} modules (this one included)."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    lines += [f"from . import {name}" for name in names]
    lines += [
        "",
        f"MODULES = {names!r}",
        "",
        "",
        "def check() -> int:",
        '    """Sum of every module\'s value(), plus the module count."""',
        "    total = " + (" + ".join(f"{name}.value()" for name in names) or "0"),
        f"    return total + {n}",
        "",
    ]
    return "\n".join(lines)


def generate(root: Path, n: int) -> Path:
    """Write ``benchpkg<n>`` under ``root`` (created); return the package directory."""
    pkg = root / package_name(n)
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(_init_source(n))
    for i in range(1, n):
        (pkg / f"m{i:03d}.py").write_text(_module_source(i))
    return pkg
