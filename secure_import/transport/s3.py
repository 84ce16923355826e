"""S3-compatible object storage through obstore: locations, the TLS-only client, errors.

The one module that builds an obstore store; the publisher (``publish/s3.py``)
and the consumer's transport (:class:`S3Transport`, what a repository with an
``s3://`` URL fetches through) both come through here, so the transport
policy is written once:

- TLS always: ``allow_http`` and ``allow_invalid_certificates`` are forced off
  in the client options, which override the ``AWS_ALLOW_HTTP`` /
  ``AWS_ALLOW_INVALID_CERTIFICATES`` variables obstore would otherwise read;
  an endpoint (given, or from ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT``) must be an
  https URL without credentials, query or fragment;
- a ``ca_bundle`` adds the named CA to the roots the client trusts (obstore
  cannot *replace* its roots, unlike the https transport: see docs);
- credentials come from the standard chain, never from our configuration
  files: boto3's chain (environment, shared config/credentials files and
  profiles, SSO, container and instance roles) when boto3 is installed, else
  obstore's own (environment, web identity, container, instance metadata).
  They are never printed: every message built here is scrubbed of the
  credential values in the environment;
- conditional puts use ETags (``conditional_put = "etag"``), whatever
  ``AWS_CONDITIONAL_PUT`` says;
- obstore's errors never escape raw: :func:`translate` turns them into the
  project's errors, keeping only the first line of obstore's (long) text.

obstore is an optional dependency (``secure-import[s3]``), imported only when
an ``s3://`` location is actually opened.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from secure_import._guard import busy
from secure_import.config import Limits
from secure_import.errors import (
    ConfigError,
    ConnectionFailedError,
    DeadlineError,
    HTTPStatusError,
    InsecureURLError,
    RedirectRefusedError,
    TLSError,
    TransportError,
)
from secure_import.transport.base import FetchStats, Response
from secure_import.transport.reading import Deadline, read_capped, refuse_announced
from secure_import.verify.names import parse_origin

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = [
    "S3Location",
    "S3Options",
    "S3Transport",
    "check_endpoint",
    "import_obstore",
    "is_not_found",
    "open_store",
    "parse_s3_url",
    "scrub_credentials",
    "store_errors",
    "translate",
]

#: Environment variables whose values are secrets (scrubbed from messages).
_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECURITY_TOKEN",
)
#: Where obstore (and AWS SDKs) read an endpoint override from.
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
# S3 bucket naming rules (general purpose buckets): 3-63 characters, lower-case
# letters, digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CHUNK = 64 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_CA_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (empty, or ending in ``/``)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """``s3://bucket/prefix/``: the form every message and audit record uses."""
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, relative_path: str) -> str:
        """The object key of a repository-relative path."""
        return self.prefix + relative_path

    def url_for(self, relative_path: str) -> str:
        return self.url + relative_path


def parse_s3_url(url: str) -> S3Location:
    """Parse ``s3://bucket[/prefix]`` strictly.

    The prefix is a plain path: segments of ``A-Z a-z 0-9 . _ -``, none empty,
    ``.`` or ``..``, so a key built from it can never step outside the
    intended prefix or mean different things to different stores.

    Raises:
        InsecureURLError: not an ``s3://`` URL, or a malformed bucket or prefix.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InsecureURLError(f"not a valid URL: {exc}", check="url", url=url) from exc
    if parts.scheme != "s3":
        raise InsecureURLError(
            "not an s3:// URL", check="scheme", url=url, expected="s3", got=parts.scheme or "(none)"
        )
    if "@" in parts.netloc or parts.query or parts.fragment or ":" in parts.netloc:
        raise InsecureURLError(
            "an s3:// URL is s3://bucket/prefix: no credentials, port, query or fragment",
            check="url-shape",
            url=url,
        )
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise InsecureURLError(
            "not a valid S3 bucket name",
            check="s3-bucket",
            url=url,
            expected="3-63 of a-z 0-9 . -",
            got=parts.netloc or "(none)",
        )
    prefix = parts.path.strip("/")
    if prefix:
        if any(s in (".", "..") or not _SEGMENT.fullmatch(s) for s in prefix.split("/")):
            raise InsecureURLError(
                "unsafe key prefix: each segment must be non-empty, not '.' or '..', and "
                "of the characters A-Z a-z 0-9 . _ -",
                check="s3-prefix",
                url=url,
                got=prefix,
            )
        prefix += "/"
    return S3Location(parts.netloc, prefix)


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach the store (never credentials: those come from the chain).

    ``endpoint`` is the S3 API endpoint of a non-AWS store (MinIO, R2, an
    emulator), ``https://host[:port]``; by default obstore uses AWS (or the
    ``AWS_ENDPOINT_URL`` variable).  ``ca_bundle`` is a PEM file of CA
    certificates added to the trusted roots.
    """

    endpoint: str | None = None
    region: str | None = None
    ca_bundle: Path | None = None


def import_obstore() -> ModuleType:
    """obstore, imported now (only the s3 path ever calls this).

    Raises:
        ConfigError: obstore is not installed.
    """
    try:
        with busy():
            return importlib.import_module("obstore")
    except ImportError as exc:
        raise ConfigError(
            "s3:// needs the optional 'obstore' package (pip install 'secure-import[s3]')",
            check="s3-support",
        ) from exc


def check_endpoint(endpoint: str | None) -> str | None:
    """The endpoint to use: the given one, else the environment's, https only.

    Raises:
        InsecureURLError: not ``https://host[:port]``.
    """
    source = "the endpoint option"
    if endpoint is None:
        for variable in _ENDPOINT_VARIABLES:
            if os.environ.get(variable):
                endpoint, source = os.environ[variable], f"${variable}"
                break
    if endpoint is None:
        return None
    try:
        _, path = parse_origin(endpoint)
    except InsecureURLError as exc:
        raise InsecureURLError(
            f"the S3 endpoint from {source} is refused: {exc.detail} (object storage is "
            "only ever reached over TLS)",
            check="s3-endpoint",
            url=endpoint,
            expected="https://host[:port]",
        ) from exc
    if path != "/":
        raise InsecureURLError(
            f"the S3 endpoint from {source} must be https://host[:port] without a path",
            check="s3-endpoint",
            url=endpoint,
        )
    return endpoint.rstrip("/")


def _read_ca(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSError(
            f"cannot load the CA bundle: {exc.strerror or exc}", check="ca-bundle", got=str(path)
        ) from exc
    if len(data) > _CA_MAX_BYTES or b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSError(
            "the CA bundle is not a PEM certificate file", check="ca-bundle", got=str(path)
        )
    return data


def _credential_provider() -> tuple[Any, str | None]:
    """boto3's standard chain when boto3 is installed and finds credentials;
    else ``None`` (obstore's own chain: environment, web identity, container,
    instance metadata).  Also boto3's region, if it knows one."""
    try:
        with busy():
            boto3 = importlib.import_module("boto3")
            provider_mod = importlib.import_module("obstore.auth.boto3")
    except ImportError:
        return None, None
    session = boto3.Session()
    if session.get_credentials() is None:
        return None, session.region_name
    return provider_mod.Boto3CredentialProvider(session), session.region_name


def open_store(location: S3Location, options: S3Options, limits: Limits) -> S3Store:
    """An obstore S3 store for ``location``: TLS only, bounded, retries few.

    Raises:
        ConfigError: obstore missing, or the store cannot be configured.
        InsecureURLError: a non-https endpoint.
        TLSError: an unreadable CA bundle.
    """
    endpoint = check_endpoint(options.endpoint)
    import_obstore()
    client: dict[str, Any] = {
        "allow_http": False,
        "allow_invalid_certificates": False,
        "connect_timeout": timedelta(seconds=limits.connect_timeout),
        "read_timeout": timedelta(seconds=limits.read_timeout),
        "timeout": timedelta(seconds=limits.download_deadline),
        "user_agent": "secure-import",
    }
    if options.ca_bundle is not None:
        client["root_certificate"] = _read_ca(options.ca_bundle)
    config: dict[str, Any] = {"conditional_put": "etag"}
    if endpoint is not None:
        config["endpoint"] = endpoint
    provider, region = _credential_provider()
    if options.region is not None:
        config["region"] = options.region
    elif region is not None and not (
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    ):
        config["region"] = region
    # Few retries, and short ones: a TLS or permission failure is not helped by
    # ten attempts, and an import should not wait minutes for a dead store.
    retry = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=limits.download_deadline),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2.0,
        },
    }
    store_mod = importlib.import_module("obstore.store")
    try:
        return store_mod.S3Store(  # type: ignore[no-any-return]
            location.bucket,
            config=config,
            client_options=client,
            retry_config=retry,
            credential_provider=provider,
        )
    except store_errors() as exc:
        raise ConfigError(
            f"cannot configure the S3 client: {_first_line(exc)}",
            check="s3-config",
            url=location.url,
        ) from None


def store_errors() -> tuple[type[Exception], ...]:
    """What an obstore call raises: its own errors, and the builtin ``OSError``
    subclasses it maps some to (``FileNotFoundError`` for a missing object)."""
    exceptions = importlib.import_module("obstore.exceptions")
    return (exceptions.BaseError, OSError)


def is_not_found(exc: BaseException) -> bool:
    exceptions = importlib.import_module("obstore.exceptions")
    return isinstance(exc, exceptions.NotFoundError | FileNotFoundError)


def scrub_credentials(text: str) -> str:
    """``text`` without any credential value found in the environment."""
    for variable in _SECRET_VARIABLES:
        value = os.environ.get(variable)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return scrub_credentials(text[0] if text else type(exc).__name__)


def translate(exc: Exception, *, url: str, what: str) -> TransportError:
    """The project's error for an obstore failure while reaching ``url``.

    The cause is not chained (``from None`` at the call site is expected):
    obstore's text can be long and carries the request's details; the first
    line, scrubbed, is kept.
    """
    exceptions = importlib.import_module("obstore.exceptions")
    first = _first_line(exc)
    full = scrub_credentials(str(exc)).lower()
    if is_not_found(exc):
        return HTTPStatusError(
            f"the {what} is not in the store", check="http-status", url=url, expected=200, got=404
        )
    if isinstance(
        exc, exceptions.UnauthenticatedError | exceptions.PermissionDeniedError | PermissionError
    ):
        return HTTPStatusError(
            f"the store refused the {what} (check the credentials and the bucket policy): {first}",
            check="http-status",
            url=url,
            expected=200,
            got=401 if isinstance(exc, exceptions.UnauthenticatedError) else 403,
        )
    if "certificate" in full or "tls" in full or "ssl" in full:
        return TLSError(
            f"TLS verification failed while fetching the {what}: {first}", check="tls", url=url
        )
    if "timed out" in full or "timeout" in full:
        return DeadlineError(f"timed out fetching the {what}: {first}", check="timeout", url=url)
    status = re.search(r"status code: (\d{3})", full)
    if status is not None:
        return HTTPStatusError(
            f"the store refused the {what}: {first}",
            check="http-status",
            url=url,
            expected=200,
            got=int(status.group(1)),
        )
    return ConnectionFailedError(
        f"the store could not be reached for the {what}: {first}", check="connection", url=url
    )


class S3Transport:
    """A repository's :class:`~secure_import.transport.base.Transport` over obstore.

    Keeps the contract of ``transport/base.py`` exactly as the HTTPS client
    does, so the repository verifies an ``s3://`` repository the same way:

    - only URLs under the repository's ``s3://bucket/prefix/`` are fetched
      (the key is the prefix plus the repository-relative path);
    - ``etag`` becomes ``If-None-Match``; an unchanged object is a 304;
    - an object whose stored size exceeds ``cap`` is refused before its body
      is read; the body is read as the HTTPS client reads one
      (:mod:`secure_import.transport.reading`): reading stops past ``cap``, and
      the download deadline and minimum throughput are checked after every
      chunk, besides the client's own timeouts;
    - ``waiting`` is called just before the request is handed to obstore,
      which releases the interpreter while it waits for the store.
    """

    def __init__(
        self,
        location: S3Location,
        options: S3Options,
        *,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises: ConfigError, InsecureURLError, TLSError as :func:`open_store`."""
        built = time.perf_counter()
        self.location = location
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._stats = FetchStats()
        self._store = open_store(location, options, limits)
        self._obstore = import_obstore()
        self._stats.seconds = time.perf_counter() - built

    @property
    def stats(self) -> FetchStats:
        return self._stats

    def close(self) -> None:
        """Nothing to release: obstore pools connections inside the store object."""

    def get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None = None,
        what: str = "file",
        waiting: Callable[[], None] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Response:
        """Download the object behind ``url`` (``s3://bucket/prefix/path``).

        ``deadline`` (``time.monotonic``) and ``cancel``: the import's, as in
        :class:`~secure_import.transport.base.Transport`; checked before the
        request and after each chunk.

        Raises:
            TransportError: and its subclasses only; HTTPStatusError with
                ``got=404`` for a missing object; TooLargeError past ``cap``.
        """
        start = time.perf_counter()
        try:
            return self._get(
                url,
                cap=cap,
                etag=etag,
                what=what,
                waiting=waiting,
                overall=deadline,
                cancel=cancel,
            )
        finally:
            with self._lock:
                self._stats.seconds += time.perf_counter() - start

    def _get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None,
        what: str,
        waiting: Callable[[], None] | None,
        overall: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Response:
        base = self.location.url
        if not url.startswith(base) or len(url) == len(base):
            raise RedirectRefusedError(
                "request outside the repository's bucket and prefix refused",
                check="s3-location",
                url=url,
                expected=base,
            )
        key = self.location.prefix + url[len(base) :]
        deadline = Deadline.start(self.limits, self._clock, overall=overall, cancel=cancel)
        deadline.check(url, what)  # no request once cancelled or past the deadline
        options: dict[str, Any] = {} if etag is None else {"if_none_match": etag}
        obstore = self._obstore
        if waiting is not None:
            waiting()
        try:
            result = obstore.get(self._store, key, options=options)
            with self._lock:
                self._stats.requests += 1
            size = int(result.meta["size"])
            refuse_announced(size, cap=cap, url=url, what=what, by="the store holds")
            body = read_capped(
                result.stream(min_chunk_size=_CHUNK),
                cap=cap,
                url=url,
                what=what,
                deadline=deadline,
            )
        except TransportError:
            raise
        except store_errors() as exc:
            if isinstance(exc, obstore.exceptions.NotModifiedError) and etag is not None:
                with self._lock:
                    self._stats.requests += 1
                return Response(url, 304, None, etag)
            raise translate(exc, url=url, what=what) from None
        with self._lock:
            self._stats.bytes += len(body)
        return Response(url, 200, body, result.meta.get("e_tag"))
