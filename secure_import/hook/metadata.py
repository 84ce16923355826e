"""``importlib.metadata`` for distributions published in a signed repository.

A publisher who puts ``NAME-VERSION.dist-info/`` (at least ``METADATA``) at the
top of the signed tree makes ``importlib.metadata.version(NAME)``,
``metadata()``, ``files()``, ``entry_points()`` and
``packages_distributions()`` work for the remote distribution.

Registration: the process-wide :class:`~secure_import.hook.finder.SecureFinder` is
an ``importlib.metadata.DistributionFinder`` and sits on ``sys.meta_path``, so
``importlib.metadata`` asks it after the local path finder (local
distributions win, as for imports).  It answers from the repositories added
with :func:`secure_import.add_repo` while they are added.

Invariants:

- every byte returned (``read_text``, ``PackagePath.read_text``) is verified
  against the signed manifest exactly like code;
- only ``.dist-info`` directories the manifest lists exist; nothing else is
  requested;
- a repository whose manifest cannot be obtained or trusted contributes no
  distribution (``importlib.metadata`` then raises ``PackageNotFoundError``
  as for any absent distribution; the import of that repository's code fails
  loudly on its own);
- a distribution is served only if the repository may provide every
  top-level name it claims (THREATS H9): the names in its signed
  ``top_level.txt``, else the repository's names when it holds that one
  distribution, else the distribution's own normalised name.  A repository
  allowed only ``good`` cannot answer ``version("requests")`` or add entry
  points under another distribution's name;
- without a ``RECORD`` file, ``files()`` is built from the signed manifest
  (path, sha256, length): the files under the names in ``top_level.txt`` or,
  when the repository holds a single distribution, every file it lists.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from importlib.metadata import Distribution, DistributionFinder
from os import PathLike

from secure_import._guard import busy
from secure_import.errors import SecureImportError
from secure_import.hook.resources import RemoteTraversable, read_verified
from secure_import.repository import Repository

__all__ = ["RemoteDistribution", "find_distributions", "normalize"]


def normalize(name: str) -> str:
    """PEP 503 name normalisation, with ``_`` as used in ``.dist-info`` names."""
    return re.sub(r"[-_.]+", "_", name).lower()


class RemoteDistribution(Distribution):
    """A distribution whose metadata lives in ``dist_dir`` of a signed repository."""

    def __init__(self, repo: Repository, dist_dir: str) -> None:
        self.repo = repo
        self.dist_dir = dist_dir

    def __repr__(self) -> str:
        return f"<RemoteDistribution {self.repo.url_for(self.dist_dir)}/>"

    def read_text(self, filename: str | PathLike[str]) -> str | None:
        """Verified text of a file in the ``.dist-info`` directory, or None if
        the manifest does not list it (a synthesized ``RECORD`` when absent)."""
        path = f"{self.dist_dir}/{filename}"
        with busy():
            listed = path in self.repo.manifest.files
        if not listed:
            return self._synthesized_record() if str(filename) == "RECORD" else None
        return read_verified(self.repo, path).decode("utf-8")

    def locate_file(self, path: str | PathLike[str]) -> RemoteTraversable:
        """The listed file at ``path`` (relative to the repository root)."""
        return RemoteTraversable(self.repo, str(path))

    def _synthesized_record(self) -> str:
        with busy():
            manifest = self.repo.manifest
        tops_text = self.read_text("top_level.txt")
        if tops_text is not None:
            tops = set(tops_text.split())
        elif len(manifest.dist_info_dirs()) == 1:
            tops = set(manifest.provides)
        else:
            tops = set()
        lines = []
        for path, entry in sorted(manifest.files.items()):
            head = path.partition("/")[0]
            if head == self.dist_dir or head in tops or head.removesuffix(".py") in tops:
                digest = base64.urlsafe_b64encode(bytes.fromhex(entry.sha256)).rstrip(b"=")
                lines.append(f"{path},sha256={digest.decode()},{entry.length}")
        return "\n".join(lines) + "\n"


def _wanted(repo: Repository, context: DistributionFinder.Context) -> bool:
    explicit = vars(context).get("path")
    if explicit is None:
        return True
    return any(isinstance(entry, str) and entry.startswith(repo.url) for entry in explicit)


def find_distributions(
    repos: Sequence[Repository], context: DistributionFinder.Context
) -> Iterator[RemoteDistribution]:
    """Distributions listed by ``repos`` that match ``context`` (name and path)."""
    wanted = None if context.name is None else normalize(context.name)
    for repo in repos:
        if not _wanted(repo, context):
            continue
        try:
            with busy():
                dirs = repo.manifest.dist_info_dirs()
        except SecureImportError:
            continue
        for dist_dir in dirs:
            name = dist_dir.partition("-")[0]
            if (wanted is None or normalize(name) == wanted) and _may_serve(repo, dist_dir):
                yield RemoteDistribution(repo, dist_dir)


def _may_serve(repo: Repository, dist_dir: str) -> bool:
    """Whether ``repo`` may provide every top-level name ``dist_dir`` claims."""
    try:
        with busy():
            manifest = repo.manifest
            if f"{dist_dir}/top_level.txt" in manifest.files:
                text = read_verified(repo, f"{dist_dir}/top_level.txt").decode("utf-8")
                tops = set(text.split())
            elif len(manifest.dist_info_dirs()) == 1:
                tops = set(manifest.provides)
            else:
                tops = {normalize(dist_dir.partition("-")[0])}
            return bool(tops) and all(top.isidentifier() and repo.may_provide(top) for top in tops)
    except (SecureImportError, UnicodeDecodeError):
        return False
