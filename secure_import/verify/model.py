"""The parsed manifest: :class:`Manifest` and its lookups (pure, no parsing).

Built only by :func:`secure_import.verify.manifest.parse` (or, from an
authenticated memo, :func:`~secure_import.verify.manifest.from_plain`), which
hold every validation rule; this module is the model the rest of the
package queries: which file defines a module, a package's children, the
signed bundle that carries a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from secure_import._frozen import Frozen
from secure_import.verify.bundle import BundleEntry
from secure_import.verify.entries import FileEntry
from secure_import.verify.paths import DIST_INFO, is_identifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.verify.requires import Requirement

__all__ = ["Manifest"]

_NO_REQUIRES: Mapping[str, Requirement] = MappingProxyType({})


def _module_dir(fullname: str) -> str | None:
    """``"a.b"`` -> ``"a/b"``; None if ``fullname`` is not a dotted module name."""
    parts = fullname.split(".")
    # "pkg.__init__" would run the package's code a second time as another module.
    if not all(is_identifier(part) and part != "__init__" for part in parts):
        return None
    return "/".join(parts)


class Manifest(Frozen):
    """A parsed, validated manifest.  Build it with :func:`parse` only."""

    _fields = (
        "version",
        "root_version",
        "issued",
        "expires",
        "provides",
        "files",
        "requires",
        "bundles",
    )
    # Weak references: per-manifest indexes (hook.resources) die with it.
    # _bundle_of: member path -> its bundle, built on first use (a warm
    # process asks for few).
    __slots__ = (*_fields, "_bundle_of", "__weakref__")
    _unhashed = frozenset({"files", "requires", "bundles"})

    version: int
    root_version: int
    issued: datetime
    expires: datetime
    provides: tuple[str, ...]
    files: Mapping[str, FileEntry]
    #: Signed dependency declarations, by top-level name (empty for v1).
    requires: Mapping[str, Requirement]
    #: Signed bundles (v3), sorted by path; ``None`` for v1 and v2, which list none.
    bundles: tuple[BundleEntry, ...] | None
    _bundle_of: dict[str, BundleEntry]

    def __init__(
        self,
        version: int,
        root_version: int,
        issued: datetime,
        expires: datetime,
        provides: tuple[str, ...],
        files: Mapping[str, FileEntry],
        requires: Mapping[str, Requirement] | None = None,
        bundles: tuple[BundleEntry, ...] | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "version", version)
        init(self, "root_version", root_version)
        init(self, "issued", issued)
        init(self, "expires", expires)
        init(self, "provides", provides)
        init(self, "files", files)
        init(self, "requires", _NO_REQUIRES if requires is None else requires)
        init(self, "bundles", bundles)
        init(self, "_bundle_of", {})

    def bundle_of(self, path: str) -> BundleEntry | None:
        """The signed bundle that carries file ``path``, if any."""
        if not self.bundles:
            return None
        if not self._bundle_of:
            self._bundle_of.update((m, b) for b in self.bundles for m in b.members)
        return self._bundle_of.get(path)

    def find_module(self, fullname: str) -> tuple[FileEntry, bool] | None:
        """The file defining module ``fullname`` and whether it is a package.

        ``"a.b"`` maps to ``a/b/__init__.py`` (a package) or ``a/b.py`` (a
        module); None if neither is listed.
        """
        base = _module_dir(fullname)
        if base is None:
            return None
        entry = self.files.get(f"{base}/__init__.py")
        if entry is not None:
            return entry, True
        entry = self.files.get(f"{base}.py")
        if entry is not None:
            return entry, False
        return None

    def is_package(self, fullname: str) -> bool:
        """True if ``fullname`` is listed as a package (``.../__init__.py``)."""
        found = self.find_module(fullname)
        return found is not None and found[1]

    def children(self, package: str) -> list[tuple[str, bool]]:
        """Direct submodules of ``package`` as sorted ``(short name, is_package)``.

        ``package=""`` lists the top-level modules.  An unknown package, or a
        plain module, has no children.
        """
        if package:
            if not self.is_package(package):
                return []
            prefix = package.replace(".", "/") + "/"
        else:
            prefix = ""
        found: dict[str, bool] = {}
        for path in self.files:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            head, slash, tail = rest.partition("/")
            if not slash:
                if rest.endswith(".py") and rest != "__init__.py":
                    found.setdefault(rest[:-3], False)
            elif tail == "__init__.py":
                found[head] = True
        return sorted(found.items())

    def files_under(self, package: str) -> list[FileEntry]:
        """Every file under ``package``'s directory (all files for ``""``), by path."""
        prefix = package.replace(".", "/") + "/" if package else ""
        return [self.files[path] for path in sorted(self.files) if path.startswith(prefix)]

    def dist_info_dirs(self) -> list[str]:
        """The top-level ``NAME-VERSION.dist-info`` directories, sorted."""
        dirs = {
            head
            for head, slash, _ in (path.partition("/") for path in self.files)
            if slash and DIST_INFO.fullmatch(head)
        }
        return sorted(dirs)
