"""secure_import: import pure-Python code over HTTPS, only when a pinned publisher signed it.

Public API::

    repo = secure_import.add_repo("https://example.org/repo/", keys=["keys/alice.pub"])
    import greetings                      # fetched, verified, cached, audited
    secure_import.remove_repo(repo)

    with secure_import.repo(url, keys=[...], modules=["greetings"]):
        import greetings

Every failure for a name a repository owns is an ``ImportError`` subclass from
:mod:`secure_import.errors` with a stable ``code``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from secure_import import errors
from secure_import.config import Limits
from secure_import.errors import SecureImportError
from secure_import.hook import inherit
from secure_import.hook.extend import extend_package
from secure_import.hook.finder import get_finder
from secure_import.pinning import KeySpec, PublisherSpec, TrustedRootSpec
from secure_import.repository import Repository
from secure_import.store.audit import AuditLog as AuditLog  # reachable as before
from secure_import.store.paths import Paths
from secure_import.store.refusals import audit_refusal
from secure_import.transport.mirrorpolicy import DEFAULT_FALLBACK
from secure_import.verify.keys import PublicKey

# Configuration files (TOML layers) and git-host URLs are imported when first
# used: ``import secure_import`` + ``add_repo`` is on every start-up path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.publish import githost
    from secure_import.settings import configure
    from secure_import.verify.identity import Identity as SigstoreIdentity

__all__ = [
    "Limits",
    "Paths",
    "PublicKey",
    "Repo",
    "Repository",
    "SecureImportError",
    "SigstoreIdentity",
    "add_repo",
    "configure",
    "errors",
    "extend_package",
    "githost",
    "remove_repo",
    "repo",
    "repositories",
]

__version__ = "0.1.0"

#: The name the API documentation uses for a configured repository.
Repo = Repository


def __getattr__(name: str) -> object:
    """``configure``, ``githost`` and ``SigstoreIdentity``, imported on first use."""
    if name == "SigstoreIdentity":
        from secure_import.verify.identity import Identity

        return Identity
    if name == "configure":
        from secure_import.settings import configure

        return configure
    if name == "githost":
        from secure_import.publish import githost

        return githost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_repo(
    url: str,
    *,
    keys: Sequence[KeySpec] = (),
    publishers: Sequence[PublisherSpec] = (),
    sigstore_trusted_root: TrustedRootSpec | None = None,
    modules: Iterable[str] | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    threshold: int = 1,
    root_version: int = 1,
    paths: Paths | None = None,
    limits: Limits | None = None,
    offline: bool = False,
    lock: str | os.PathLike[str] | None = None,
    trust_dependencies: bool | str = False,
    unsafe_undeclared_imports: bool = False,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
    materialise: bool | Iterable[str] = False,
    children: bool = True,
    mirrors: Sequence[str] = (),
    fallback: str = DEFAULT_FALLBACK,
) -> Repository:
    """Trust ``url`` for code signed by ``keys`` and install the finder.

    Args:
        url: an ``https://`` URL of a signed repository (``http://`` is refused
            here, before any request), or ``s3://bucket/prefix/`` for one in
            S3-compatible object storage, read through obstore (the ``s3``
            extra) over TLS with the standard AWS credential chain and
            verified exactly like https.
        keys: the publisher's public key files (PEM) or loaded keys.
        publishers: more pinned publishers: key files, loaded keys, or
            :class:`SigstoreIdentity` pins (a CI workflow or a person signing
            keylessly; needs the extra ``secure-import[sigstore]``).  Keys and
            identities share ``threshold``: ``threshold=2`` with a CI identity
            and Alice's key means the CI workflow built it and Alice approved.
        sigstore_trusted_root: the Sigstore trusted root identities are
            verified against: ``"public-good"`` (default: the one shipped with
            sigstore-python), a ``trusted_root.json`` path (a private Sigstore
            deployment), never sigstore's user cache.
        modules: top-level names accepted from this repository; by default the
            names its verified manifest declares (fetched on first need).
        ca_bundle: a PEM file that, when given, is the only CA trusted for this
            repository's TLS (private servers); for ``s3://``, a CA added to
            the trusted roots (obstore cannot replace them).
        threshold: how many distinct pinned publishers must sign the manifest
            (keys count once each; the identities together count once, for the
            one Sigstore bundle a manifest carries).
        root_version: the version of the publisher's trust root these keys
            form (1 unless you pin after a rotation); later rotations published
            in the repository are followed automatically and recorded.
        paths: cache/state/log directories (default: platformdirs, or the
            ``SECURE_IMPORT_*_DIR`` environment variables).
        offline: never contact the server; use the cached manifest (verified
            as usual: unexpired, not below the high-water mark) and cached files.
        lock: a lock file (see :func:`secure_import.store.lock.write_lock`): frozen
            mode, only the locked manifest is accepted; when it is cached (after
            ``prefetch``), no request is made at all.
        trust_dependencies: follow this repository's signed dependency
            declarations to repositories you did not pin: ``True`` one level,
            ``"transitive"`` all the way (a widening: each followed repository
            serves only the declared names, is pinned to the declared keys,
            audited, and in frozen mode must be in the lock file).
        unsafe_undeclared_imports: let this repository's code import names
            other repositories serve without a signed declaration (warns).
        s3_endpoint: for ``s3://``: the https S3 API endpoint of a non-AWS
            store (default: AWS, or ``$AWS_ENDPOINT_URL``); never plaintext.
        s3_region: for ``s3://``: the bucket's region (default: the AWS chain's).
        materialise: ``True`` (every package of this repository) or a list of
            top-level package names whose verified files are written to a
            private, read-only directory under the cache, so ``__file__``,
            ``__path__`` and ``__spec__.origin`` are real paths for code that
            opens its own data files.  Code still runs from the verified bytes;
            the copy on disk is re-verified by each process before use.
        children: child interpreters (``subprocess`` with ``sys.executable``,
            ``multiprocessing`` with any start method) inherit this repository
            with the same keys and policy (see ``docs/operations.md``,
            "Child interpreters"); ``False`` keeps it to this process.
        mirrors: https URLs serving copies of this repository (at most
            five), asked after ``url`` in this order by the ``fallback``
            policy.  Everything a mirror serves is verified exactly like the
            origin's bytes (same keys, rollback, freeze and expiry rules, caps);
            a mirror never receives the credential or client certificate, and
            its redirects may stay on its own origin only.
        fallback: ``"on-error"`` (default: any transport failure of one source
            sends the request to the next) or ``"on-not-found"`` (only a 404
            or 410 does).  A trust failure (hash, signature, rollback) never
            fails over: tampered bytes are refused, not replaced.

    Raises:
        InsecureURLError: the URL is not https (or a valid s3:// URL).
        ConfigError, KeyFileError: bad keys, names or threshold; ``s3://``
            without the ``s3`` extra installed.
    """
    try:
        repository = Repository(
            url,
            keys=keys,
            publishers=publishers,
            sigstore_trusted_root=sigstore_trusted_root,
            threshold=threshold,
            root_version=root_version,
            modules=modules,
            ca_bundle=ca_bundle,
            paths=paths,
            limits=limits,
            offline=offline,
            lock=lock,
            trust_dependencies=trust_dependencies,
            unsafe_undeclared_imports=unsafe_undeclared_imports,
            s3_endpoint=s3_endpoint,
            s3_region=s3_region,
            materialise=materialise,
            mirrors=mirrors,
            fallback=fallback,
        )
    except SecureImportError as exc:
        # A refused configuration is audited like a refused import.
        audit_refusal(paths, exc)
        raise
    if unsafe_undeclared_imports:
        import warnings

        warnings.warn(
            f"secure_import: unsafe_undeclared_imports for {repository.url}: its code may "
            "import names other repositories serve without a signed declaration",
            stacklevel=2,
        )
    finder = get_finder()
    for inherited in [r for r in finder.repositories if getattr(r, "inherited", False)]:
        if inherited.url == repository.url:
            # The application configures this repository itself: its own
            # settings replace the ones inherited from the parent process.
            finder.remove(inherited)
            inherited.close()
    repository.inheritable = children  # type: ignore[attr-defined]
    finder.add(repository)
    inherit.export()
    return repository


def remove_repo(repository: Repository) -> None:
    """Stop serving names from ``repository``.  Modules already imported stay
    in ``sys.modules``: they were verified when loaded."""
    get_finder().remove(repository)
    repository.close()
    inherit.export()


def repositories() -> Sequence[Repository]:
    """The repositories the finder currently consults, in order."""
    return get_finder().repositories


@contextmanager
def repo(
    url: str,
    *,
    keys: Sequence[KeySpec] = (),
    publishers: Sequence[PublisherSpec] = (),
    sigstore_trusted_root: TrustedRootSpec | None = None,
    modules: Iterable[str] | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    threshold: int = 1,
    root_version: int = 1,
    paths: Paths | None = None,
    limits: Limits | None = None,
    offline: bool = False,
    lock: str | os.PathLike[str] | None = None,
    trust_dependencies: bool | str = False,
    unsafe_undeclared_imports: bool = False,
    materialise: bool | Iterable[str] = False,
    children: bool = True,
    mirrors: Sequence[str] = (),
    fallback: str = DEFAULT_FALLBACK,
) -> Iterator[Repository]:
    """``add_repo`` for the duration of a ``with`` block."""
    repository = add_repo(
        url,
        keys=keys,
        publishers=publishers,
        sigstore_trusted_root=sigstore_trusted_root,
        modules=modules,
        ca_bundle=ca_bundle,
        threshold=threshold,
        root_version=root_version,
        paths=paths,
        limits=limits,
        offline=offline,
        lock=lock,
        trust_dependencies=trust_dependencies,
        unsafe_undeclared_imports=unsafe_undeclared_imports,
        materialise=materialise,
        children=children,
        mirrors=mirrors,
        fallback=fallback,
    )
    try:
        yield repository
    finally:
        remove_repo(repository)
