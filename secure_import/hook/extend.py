"""A lightweight local package whose subpackages are downloaded on first use.

In the local package's ``__init__.py``::

    import secure_import
    secure_import.extend_package(__name__, "https://example.org/plugins/",
                                 keys=[KEY_FILE])

Then ``import pkg.extra`` — when ``pkg/extra`` does not exist locally — is
fetched from the repository, verified against its signed manifest, cached and
audited; later runs load it from the cache (each process revalidates the
manifest with one conditional request, or none with ``offline=True``).
``secure-import cache clear`` drops the cached files so the next run fetches
whatever the current signed manifest lists.

Layout of the remote repository: the same tree as the local package, rooted
at the top-level name.  To extend ``pkg`` the publisher signs a tree with
``pkg/__init__.py`` (never executed by consumers: the local one is) and the
subpackages under ``pkg/``; to extend ``pkg.plugins``, ``pkg/__init__.py``,
``pkg/plugins/__init__.py`` and the subpackages under ``pkg/plugins/``.

How it works, and why it is safe:

- the repository's package directory URL is appended to the local package's
  ``__path__``.  The standard path finder tries local directories first, so a
  local submodule always wins; only a name not found locally reaches the
  ``https://`` entry, which secure_import's path hook claims;
- the repository is *not* added to the meta-path finder: it serves only names
  under ``package_name`` (``pkg.*``), only when listed in its signed manifest
  (otherwise ``NotListedError``, no request), never the top-level package
  itself and never anything else it may list;
- every byte is verified exactly as for :func:`secure_import.add_repo`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from secure_import.config import Limits
from secure_import.errors import ConfigError, SecureImportError
from secure_import.hook.finder import RemoteLoader, get_finder
from secure_import.repository import KeySpec, Repository
from secure_import.store.paths import Paths
from secure_import.store.refusals import audit_refusal
from secure_import.verify.names import is_never_remote, parse_origin

__all__ = ["extend_package"]


def extend_package(
    package_name: str,
    url: str,
    *,
    keys: Sequence[KeySpec],
    threshold: int = 1,
    ca_bundle: str | os.PathLike[str] | None = None,
    paths: Paths | None = None,
    limits: Limits | None = None,
    offline: bool = False,
) -> Repository:
    """Serve the missing subpackages of local package ``package_name`` from ``url``.

    Call it from the package's own ``__init__.py`` (``package_name=__name__``).
    Calling it again with the same package and URL (a reload) reuses the
    repository.  ``secure_import.remove_repo(repo)`` stops it.

    Returns:
        the :class:`~secure_import.repository.Repository` serving the subpackages.

    Raises:
        ConfigError: ``package_name`` is not an imported local package, or is
            never served remotely.
        InsecureURLError, KeyFileError: as for :func:`secure_import.add_repo`.
        Each refusal is audited, as :func:`secure_import.add_repo`'s are.
    """
    try:
        return _extend(
            package_name,
            url,
            keys=keys,
            threshold=threshold,
            ca_bundle=ca_bundle,
            paths=paths,
            limits=limits,
            offline=offline,
        )
    except SecureImportError as exc:
        # A refused configuration is audited like a refused import.
        audit_refusal(paths, exc)
        raise


def _extend(
    package_name: str,
    url: str,
    *,
    keys: Sequence[KeySpec],
    threshold: int,
    ca_bundle: str | os.PathLike[str] | None,
    paths: Paths | None,
    limits: Limits | None,
    offline: bool,
) -> Repository:
    module = sys.modules.get(package_name)
    search = getattr(module, "__path__", None)
    if module is None or search is None:
        raise ConfigError(
            "extend_package needs an imported package (call it from its __init__.py)",
            check="extend-package",
            got=package_name,
        )
    spec = getattr(module, "__spec__", None)
    if spec is not None and isinstance(spec.loader, RemoteLoader):
        raise ConfigError(
            "the package is itself remote; its subpackages are already served",
            check="extend-package",
            got=package_name,
        )
    top = package_name.partition(".")[0]
    if is_never_remote(top):
        raise ConfigError(
            f"{top!r} is never served remotely", check="extend-package", got=package_name
        )
    finder = get_finder()
    origin, base = parse_origin(url)  # refuses http:// before anything else
    port = "" if origin.port == 443 else f":{origin.port}"
    wanted = f"https://{origin.host}{port}{base}"
    for repo, scope in finder.extensions:
        if scope == package_name and repo.url == wanted:
            break  # a reload of the package: same repository, same cache
    else:
        repo = Repository(
            url,
            keys=keys,
            threshold=threshold,
            modules=[top],
            ca_bundle=ca_bundle,
            paths=paths,
            limits=limits,
            offline=offline,
        )
        finder.add_extension(repo, package_name)
    entry = repo.url_for(package_name.replace(".", "/") + "/")
    if entry not in list(search):
        search.append(entry)
    return repo
