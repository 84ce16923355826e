"""A repository's mirror list and failover policy, checked; the host that
served a body, for the audit log.

Split from :mod:`secure_import.transport.mirrors` (which re-exports every
name) because every repository checks its mirrors when it is added and every
load record names its host, on the warm path too: this module imports no
HTTP client, :mod:`typing` or :mod:`dataclasses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from secure_import.errors import ConfigError
from secure_import.verify.names import normalize_url, parse_origin

__all__ = ["DEFAULT_FALLBACK", "FALLBACKS", "MAX_MIRRORS", "check_mirrors", "served_host"]

#: The failover policies a repository may choose.
FALLBACKS = ("on-error", "on-not-found")
#: Every source is verified the same way and the list is per repository (no
#: public fallback), so failing over on any transport error costs no trust
#: and keeps imports working when the origin is down: see docs/operations.md.
DEFAULT_FALLBACK = "on-error"
#: At most this many mirrors per repository (one error lists every attempt).
MAX_MIRRORS = 5


def check_mirrors(url: str, mirrors: Sequence[str], fallback: str) -> tuple[tuple[str, ...], str]:
    """The normalised mirror URLs of the repository at ``url`` and its policy.

    Raises:
        InsecureURLError: a mirror is not an https URL.
        ConfigError: an unknown policy, too many mirrors, a mirror listed
            twice or equal to the repository's URL, or mirrors for an
            ``s3://`` repository.
    """
    if fallback not in FALLBACKS:
        raise ConfigError(
            "fallback is 'on-error' or 'on-not-found'",
            check="fallback",
            url=url,
            got=repr(fallback),
        )
    if isinstance(mirrors, str):
        raise ConfigError("mirrors is a list of https URLs", check="mirrors", url=url)
    if url.startswith("s3://"):
        if mirrors:
            raise ConfigError(
                "mirrors apply to https repositories", check="mirrors", url=url, got=list(mirrors)
            )
        return (), fallback
    if len(mirrors) > MAX_MIRRORS:
        raise ConfigError(
            "too many mirrors for one repository",
            check="mirrors",
            url=url,
            expected=f"<= {MAX_MIRRORS}",
            got=len(mirrors),
        )
    seen = {normalize_url(url)}
    out: list[str] = []
    for mirror in mirrors:
        if not isinstance(mirror, str):
            raise ConfigError("a mirror is an https URL", check="mirrors", url=url, got=mirror)
        normal = normalize_url(mirror)  # https only, like the origin
        if normal in seen:
            raise ConfigError(
                "a mirror is listed twice, or is the repository's own URL",
                check="mirrors",
                url=url,
                got=normal,
            )
        seen.add(normal)
        out.append(normal)
    return tuple(out), fallback


def served_host(url: str) -> str:
    """``host[:port]`` of the https URL that served a body, for the audit log
    (``s3://bucket`` for object storage)."""
    if not url.startswith("https://"):
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    origin, _ = parse_origin(url)
    default = 443
    return origin.host if origin.port == default else f"{origin.host}:{origin.port}"
