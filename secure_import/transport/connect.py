"""Building a repository's transport: HTTPS (with its mirrors) or object storage.

Everything here imports the network stack only when it is called: a
repository is built on every start-up path, and an offline or frozen one
with a warm cache never connects.  :func:`start_network` loads the stack when
a repository that will connect is added, so that its import (httpx, ssl:
tens of milliseconds) is paid in ``add_repo``, not inside the first import
statement.

It is loaded in the calling thread, not in a background thread overlapping
the application's start-up: CPython's import machinery cannot wait for such
a thread safely.  The finder is often first consulted from inside a nested
import (``pickle`` probing for ``org.python.core`` while ``multiprocessing``
is being imported) whose module locks the importing thread holds; a
background import that needs one of those modules then waits for the
importing thread, which waits for it (seen as a hang in a spawned
multiprocessing worker).
"""

from __future__ import annotations

from collections.abc import Sequence

from secure_import.config import Limits
from secure_import.errors import ConfigError
from secure_import.verify.names import normalize_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from secure_import.transport.base import Transport
    from secure_import.transport.https import TransportOptions
    from secure_import.transport.s3 import S3Location

__all__ = [
    "connect_https",
    "connect_s3",
    "repository_location",
    "s3_location",
    "start_network",
]


def s3_location(url: str, transport: TransportOptions | None, endpoint: str | None) -> S3Location:
    """The bucket and prefix of an ``s3://`` repository URL (no request made).

    Raises:
        InsecureURLError: a malformed ``s3://`` URL, or a non-https endpoint
            (given, or from the environment).
        ConfigError: https-only options (credentials header, client
            certificate, system trust store) given for object storage, whose
            credentials come from the standard AWS chain.
    """
    from secure_import.transport.s3 import check_endpoint, parse_s3_url

    location = parse_s3_url(url)
    check_endpoint(endpoint)
    if transport is not None and not transport.is_default:
        raise ConfigError(
            "auth, client certificates and the system trust store apply to https "
            "repositories; an s3:// repository takes its credentials from the AWS chain",
            check="s3-options",
            url=location.url,
        )
    return location


def repository_location(
    url: str,
    transport: TransportOptions | None,
    s3_endpoint: str | None,
    s3_region: str | None,
) -> tuple[str, S3Location | None]:
    """The repository's URL in its one spelling, and its bucket and prefix
    for ``s3://`` (no request made).

    Raises:
        InsecureURLError: not https (or a malformed ``s3://`` URL).
        ConfigError: S3 options for an https repository, or https-only
            options for object storage.
    """
    if url.startswith("s3://"):
        location = s3_location(url, transport, s3_endpoint)
        return location.url, location
    if s3_endpoint is not None or s3_region is not None:
        raise ConfigError(
            "s3_endpoint and s3_region apply to s3:// repositories only",
            check="s3-options",
            url=url,
        )
    return normalize_url(url), None


def start_network(*, s3: bool) -> None:
    """Load what the first request needs now: the HTTPS stack, or obstore
    (a missing ``s3`` extra is reported here)."""
    if not s3:
        from secure_import.transport.https import load_network_stack

        load_network_stack()
        return
    from secure_import.transport.s3 import import_obstore

    import_obstore()


def connect_https(
    url: str,
    *,
    limits: Limits,
    ca_bundle: Path | None,
    transport: TransportOptions | None,
    mirrors: Sequence[str],
    fallback: str,
) -> Transport:
    """The HTTPS client for ``url``, or a mirror set when mirrors are listed.

    Raises:
        TransportError, ConfigError: a client cannot be built.
    """
    from secure_import.transport.https import Fetcher, TransportOptions
    from secure_import.transport.mirrors import MirrorSet, SourceClient

    origin = Fetcher(url, limits=limits, ca_bundle=ca_bundle, transport=transport)
    if not mirrors:
        return origin
    # Each mirror is its own client, bound to its own origin (redirects stay
    # there), verified against the same CA choice, never sent the credential
    # or the client certificate.
    sources: list[tuple[str, SourceClient]] = [(url, origin)]
    options = (transport or TransportOptions()).for_mirror()
    for mirror in mirrors:
        sources.append(
            (mirror, Fetcher(mirror, limits=limits, ca_bundle=ca_bundle, transport=options))
        )
    return MirrorSet(url, sources, fallback=fallback, failover_after=limits.failover_after)


def connect_s3(
    location: S3Location,
    *,
    endpoint: str | None,
    region: str | None,
    ca_bundle: Path | None,
    limits: Limits,
) -> Transport:
    """Object storage through obstore: the same verification, another transport."""
    from secure_import.transport.s3 import S3Options, S3Transport

    options = S3Options(endpoint=endpoint, region=region, ca_bundle=ca_bundle)
    return S3Transport(location, options, limits=limits)
