"""The dependency graph between repositories: signed declarations checked
against what the consumer pinned, and followed only where the consumer allowed.

A repository's signed manifest may declare, for a top-level name its code
imports from another repository, that repository's URL, its publisher and the
accepted versions (:mod:`secure_import.verify.requires`).  This module decides
what such an *edge* is worth in this process; the trust decisions themselves
are the pure checks of that module.

Invariants:

- a declaration never adds trust on its own.  The name must be served by a
  repository the consumer pinned, or the declaring repository must have been
  configured with ``trust_dependencies`` (then the declared repository is
  added, serving the declared names only, verified against the declared keys,
  audited as ``follow``); a repository reached that way follows its own
  declarations only under ``trust_dependencies = "transitive"``;
- every edge is checked before any code of the declaring repository runs
  (:meth:`DependencyGraph.admit`): the serving repository's URL must be the
  declared one, at least the declared threshold of declared keys must be both
  pinned for it and signatures on its manifest in use, and that manifest must
  be inside the declared range.  Any mismatch refuses the declaring repository,
  with a message naming the declaration and what the consumer has;
- each top-level name maps to exactly one repository: two repositories that
  may serve the same name are refused at the first use of that name
  (:meth:`DependencyGraph.owner_of`), never resolved by order;
- code of one repository that imports a name another repository serves
  without a declaration is refused (``undeclared-import``) unless the
  importing repository was configured with ``unsafe_undeclared_imports``;
- the graph is walked breadth first with each repository URL visited once,
  so cycles between repositories terminate.

Who imports is read from the call stack: the first frame outside the import
system, the standard library and secure_import whose code was compiled from an
``https://`` URL names the importing repository.  This is an integrity check
against undeclared drift, not a sandbox: code that runs can forge its frames.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from secure_import._frozen import Frozen
from secure_import.errors import (
    DependencyConflictError,
    DependencyError,
    SecureImportError,
    UndeclaredImportError,
)
from secure_import.repository import Repository

# The declaration checks (and the version grammar) are imported when a
# declaration is resolved: a process without any never loads them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.verify.requires import Requirement

__all__ = ["DependencyGraph", "Edge", "importing_repository", "walk"]


class Edge(Frozen):
    """A checked declaration: ``declarer`` may import ``requirement.name``
    from ``target``, whose manifest in use is ``in_use``."""

    _fields = ("declarer", "requirement", "target", "in_use", "followed")
    __slots__ = _fields

    declarer: Repository
    requirement: Requirement
    target: Repository
    in_use: str
    #: True when ``target`` exists only because the declaration was followed.
    followed: bool

    def __init__(
        self,
        declarer: Repository,
        requirement: Requirement,
        target: Repository,
        in_use: str,
        followed: bool,
    ) -> None:
        init = object.__setattr__
        init(self, "declarer", declarer)
        init(self, "requirement", requirement)
        init(self, "target", target)
        init(self, "in_use", in_use)
        init(self, "followed", followed)

    def describe(self) -> str:
        """The declaration as audit records name it."""
        version = self.declarer.trusted_manifest().manifest.version
        return (
            f"declared by {self.declarer.url} (manifest {version}): "
            f"{self.requirement.describe()}; in use: {self.in_use}"
        )


class DependencyGraph:
    """Edges of one set of repositories (the finder's, or a list for
    ``secure-import lock``/``tree``), admitted once per repository."""

    def __init__(
        self,
        repositories: Callable[[], Sequence[Repository]],
        add: Callable[[Repository], None],
        changed: Callable[[], None] | None = None,
        *,
        audit: bool = True,
    ) -> None:
        #: Record edges and refusals in the audit log (off for ``tree``, which
        #: only looks).
        self._audit = audit
        self._repositories = repositories
        self._add = add
        self._changed = changed or (lambda: None)
        self._lock = threading.RLock()
        self._admitted: dict[int, list[Edge]] = {}
        #: Repositories added by following a declaration: id -> the first edge.
        self._followed: dict[int, Edge] = {}
        #: Edges by (declarer id, name), for import checks and audit records.
        self._edges: dict[tuple[int, str], Edge] = {}

    # -- queries ------------------------------------------------------------

    def reached_by(self, repo: Repository) -> Edge | None:
        """The edge that added ``repo`` to the graph, if it was followed."""
        return self._followed.get(id(repo))

    def followed_from(self, repo: Repository) -> list[Repository]:
        """Repositories added because ``repo`` (directly) declared them."""
        return [e.target for e in self._followed.values() if e.declarer is repo]

    def edges(self, repo: Repository) -> list[Edge]:
        """The checked edges of ``repo`` (after :meth:`admit`)."""
        return list(self._admitted.get(id(repo), ()))

    def forget(self, repo: Repository) -> None:
        """Drop what is known about ``repo`` (it was removed)."""
        with self._lock:
            self._admitted.pop(id(repo), None)
            self._followed.pop(id(repo), None)
            for key in [k for k in self._edges if k[0] == id(repo)]:
                del self._edges[key]

    def owner_of(self, name: str) -> Repository | None:
        """The one repository that may serve top-level ``name``, or None.

        Raises:
            DependencyConflictError: more than one repository may serve it.
            TrustError, TransportError: a manifest needed to know could not
                be trusted.
        """
        owners = [repo for repo in self._repositories() if repo.may_provide(name)]
        if len(owners) > 1:
            raise DependencyConflictError(
                f"{name} is claimed by {len(owners)} repositories: "
                f"{', '.join(r.url for r in owners)}; each name must map to exactly one "
                "repository (restrict one of them with modules=)",
                check="name-claimed-twice",
                url=owners[1].url,
                expected=f"{name} from one repository",
                got=", ".join(r.url for r in owners),
                name=name,
            )
        return owners[0] if owners else None

    # -- admission ---------------------------------------------------------

    def admit(self, repo: Repository) -> list[Edge]:
        """Check every declaration of ``repo`` (once per process), following
        those the consumer allowed; return the edges.

        Raises:
            DependencyError: a declaration disagrees with the consumer's pins,
                names a repository other than the one serving the name, or
                its range excludes the version in use (audited).
            TrustError, TransportError: a dependency's manifest failed.
        """
        with self._lock:
            done = self._admitted.get(id(repo))
            if done is not None:
                return list(done)
            edges: list[Edge] = []
            for name, req in sorted(repo.manifest.requires.items()):
                edge = self._resolve(repo, req)
                if edge is not None:
                    edges.append(edge)
                    self._edges[(id(repo), name)] = edge
            self._admitted[id(repo)] = edges
            return list(edges)

    def _follow_level(self, repo: Repository) -> str:
        edge = self._followed.get(id(repo))
        if edge is None:
            return repo.trust_dependencies
        # Reached through a declaration: follows further only when the chain
        # that reached it is transitive all the way.
        return "transitive" if self._follow_level(edge.declarer) == "transitive" else "no"

    def _resolve(self, repo: Repository, req: Requirement) -> Edge | None:
        from secure_import.verify.requires import check_publisher, check_target

        declared_by = f"{repo.url} (manifest {repo.manifest.version})"
        owner = self.owner_of(req.name)
        followed = False
        if owner is None:
            if self._follow_level(repo) == "no":
                return None  # refused when (if) the code imports it: see check_import
            owner = self._follow(repo, req)
            followed = True
        if owner.url != req.repository:
            raise self._refused(
                repo,
                DependencyConflictError(
                    f"{declared_by} declares {req.name} from {req.repository}, but the "
                    f"consumer gets {req.name} from {owner.url}; a dependency never takes a "
                    "name the consumer already gets from elsewhere",
                    check="dependency-repository",
                    url=owner.url,
                    expected=req.repository,
                    got=owner.url,
                    name=req.name,
                ),
                req,
            )
        try:
            check_publisher(
                req,
                key_ids=owner.current_root().key_ids,
                what="pinned to",
                declared_by=declared_by,
                url=owner.manifest_url,
            )
            trusted = owner.trusted_manifest()
            check_publisher(
                req,
                key_ids=trusted.key_ids,
                what="signed by",
                declared_by=declared_by,
                url=owner.manifest_url,
            )
            in_use = check_target(
                req,
                manifest=trusted.manifest,
                envelope_digest=trusted.envelope_digest,
                declared_by=declared_by,
                url=owner.manifest_url,
            )
        except DependencyError as exc:
            raise self._refused(repo, exc, req) from None
        edge = Edge(repo, req, owner, in_use, followed)
        if followed:
            self._followed.setdefault(id(owner), edge)
        if not self._audit:
            return edge
        repo.record(
            "dependency",
            outcome="followed" if followed else "ok",
            module=req.name,
            url=owner.manifest_url,
            sha256=trusted.envelope_digest,
            manifest_version=trusted.manifest.version,
            key_id=trusted.key_id_text,
            via=edge.describe(),
        )
        return edge

    def _follow(self, repo: Repository, req: Requirement) -> Repository:
        """Add the declared repository, serving the declared name only."""
        existing = [r for r in self._repositories() if r.url == req.repository]
        if existing:
            # Already in the graph (another declaration, or a cycle): it
            # gains this name only if it was itself reached by following.
            target = existing[0]
            if id(target) not in self._followed or target.modules is None:
                raise self._refused(
                    repo,
                    DependencyConflictError(
                        f"{repo.url} declares {req.name} from {req.repository}, which the "
                        f"consumer configured without {req.name} in its modules",
                        check="dependency-repository",
                        url=req.repository,
                        expected=f"{req.name} allowed from {req.repository}",
                        got=sorted(target.modules or ()),
                        name=req.name,
                    ),
                    req,
                )
            target.modules = target.modules | {req.name}
            self._changed()
            return target
        target = Repository(
            req.repository,
            keys=list(req.keys),
            threshold=req.threshold,
            modules=[req.name],
            ca_bundle=repo.ca_bundle,
            paths=repo.paths,
            limits=repo.limits,
            offline=repo.offline,
            lock=repo.lock_file,  # frozen mode: only a locked dependency is followed
        )
        self._add(target)
        return target

    def _refused(
        self, repo: Repository, exc: SecureImportError, req: Requirement
    ) -> SecureImportError:
        if exc.name is None:
            exc.name = req.name
        if self._audit:
            repo.record_refusal(exc, module=req.name)
            exc._secure_import_audited = True  # type: ignore[attr-defined]
        return exc

    def inspect(
        self, repo: Repository
    ) -> list[tuple[Requirement, Edge | None, SecureImportError | None]]:
        """Every declaration of ``repo`` with its edge or the reason it would
        be refused, each resolved on its own (``secure-import tree``).

        Raises:
            TrustError, TransportError: ``repo``'s own manifest failed.
        """
        results: list[tuple[Requirement, Edge | None, SecureImportError | None]] = []
        with self._lock:
            for name, req in sorted(repo.manifest.requires.items()):
                try:
                    edge = self._resolve(repo, req)
                except SecureImportError as exc:
                    results.append((req, None, exc))
                    continue
                if edge is None:
                    results.append((req, None, self.declared_but_absent(repo, name)))
                else:
                    self._edges[(id(repo), name)] = edge
                    results.append((req, edge, None))
            self._admitted[id(repo)] = [edge for _, edge, _ in results if edge is not None]
        return results

    # -- imports -------------------------------------------------------------

    def check_import(self, importer: Repository, name: str, owner: Repository) -> Edge | None:
        """Whether code of ``importer`` may import ``name``, served by ``owner``.

        Returns the edge that allows it (None only for an importer configured
        with ``unsafe_undeclared_imports``).

        Raises:
            UndeclaredImportError: no declaration for ``name``.
            DependencyError: the declaration does not match ``owner``.
        """
        self.admit(importer)
        edge = self._edges.get((id(importer), name))
        if edge is not None and edge.target is owner:
            return edge
        req = importer.manifest.requires.get(name)
        if req is None:
            if importer.unsafe_undeclared_imports:
                return None
            raise UndeclaredImportError(
                f"code from {importer.url} imports {name}, which {owner.url} serves, but "
                f"{importer.url}'s signed manifest declares no dependency on {name}",
                check="dependency-declared",
                url=owner.url,
                expected=f"a requires entry for {name}",
                got="none",
                name=name,
            )
        raise DependencyConflictError(
            f"{importer.url} declares {req.describe()}, but {name} is served by {owner.url}",
            check="dependency-repository",
            url=owner.url,
            expected=req.repository,
            got=owner.url,
            name=name,
        )

    def declared_but_absent(self, importer: Repository, name: str) -> DependencyError | None:
        """The refusal for code of ``importer`` importing a declared ``name``
        that no repository serves (the consumer neither pinned nor followed it)."""
        req = importer.manifest.requires.get(name)
        if req is None:
            return None
        return DependencyError(
            f"{importer.url} declares {req.describe()}, but the consumer pins no repository "
            f"for {name}: pin {req.repository} (publisher {req.publisher}) or configure "
            f"{importer.url} with trust_dependencies",
            check="dependency-pinned",
            url=req.repository,
            expected=f"{name} from a pinned repository",
            got="not pinned",
            name=name,
        )


def walk(repositories: Sequence[Repository]) -> tuple[list[Repository], DependencyGraph]:
    """Every repository reachable from ``repositories`` (each URL once, so
    cycles end), with their edges admitted, for ``lock`` and ``tree``.

    Raises:
        SecureImportError: the first repository or edge that fails.
    """
    found = list(repositories)
    graph = DependencyGraph(lambda: found, found.append)
    index = 0
    while index < len(found):
        repo = found[index]
        index += 1
        graph.admit(repo)
    return found, graph


# --- who is importing -----------------------------------------------------------

_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_stdlib_dir: str | None = None


def _stdlib() -> str:
    """The standard library's directory, asked of sysconfig on first use
    (not when secure_import is imported: enabling it must stay cheap)."""
    global _stdlib_dir
    if _stdlib_dir is None:
        import sysconfig

        _stdlib_dir = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
    return _stdlib_dir


def _transparent(filename: str) -> bool:
    """Frames of the import system, the standard library and secure_import
    itself: they import on behalf of someone further up the stack."""
    if filename.startswith(("<frozen ", _OWN_DIR)):
        return True
    return filename.startswith(_stdlib()) and not (
        "site-packages" in filename or "dist-packages" in filename
    )


def importing_repository(repositories: Sequence[Repository], depth: int = 1) -> Repository | None:
    """The repository whose code is importing now, or None for local code."""
    frame: FrameType | None = sys._getframe(depth + 1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(("https://", "s3://")):
            best: Repository | None = None
            for repo in repositories:
                if filename.startswith(repo.url) and (
                    best is None or len(repo.url) > len(best.url)
                ):
                    best = repo
            return best
        if not _transparent(filename):
            return None
        frame = frame.f_back
    return None
