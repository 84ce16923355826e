"""Which names and URLs may be remote (pure): https-only origins and the
top-level names that are never served remotely."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from secure_import._frozen import Frozen
from secure_import.errors import ConfigError, InsecureURLError

#: Names that are never served from a remote repository, whatever the
#: configuration says: start-up hooks, and secure_import itself.  Standard
#: library names are added by :func:`is_never_remote`.
NEVER_REMOTE = frozenset({"sitecustomize", "usercustomize", "secure_import", "__main__"})


def is_never_remote(top_level: str) -> bool:
    """True for top-level names no repository may provide (THREATS N2)."""
    return top_level in NEVER_REMOTE or top_level in sys.stdlib_module_names


def check_allowed_modules(modules: Iterable[str] | str | None) -> frozenset[str] | None:
    """The top-level names a user allows from a repository (``None``: all it
    provides), checked: identifiers only, never a name that is never remote.

    Raises:
        ConfigError: a name is not a top-level identifier, or is never served
            remotely.
    """
    if modules is None:
        return None
    if isinstance(modules, str):
        modules = [modules]
    names = frozenset(modules)
    for name in names:
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ConfigError(
                "allowed module names must be top-level identifiers",
                check="modules",
                got=repr(name),
            )
        if is_never_remote(name):
            raise ConfigError(
                f"{name!r} is never served remotely (start-up hook, standard library, "
                "or secure_import itself)",
                check="modules",
                got=name,
            )
    return names


_FOLLOW = {False: "no", True: "direct", "no": "no", "direct": "direct", "transitive": "transitive"}


def check_follow_level(value: bool | str) -> str:
    """``trust_dependencies`` as given, as ``"no"``, ``"direct"`` or ``"transitive"``.

    Raises:
        ConfigError: anything else.
    """
    level = _FOLLOW.get(value) if isinstance(value, bool | str) else None
    if level is None:
        raise ConfigError(
            "trust_dependencies is false, true (one level) or 'transitive'",
            check="trust-dependencies",
            got=repr(value),
        )
    return level


def check_materialise(materialise: bool | Iterable[str] | str) -> bool | frozenset[str]:
    """Materialise mode as given: ``True``/``False``, or the top-level names
    to materialise.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(materialise, bool):
        return materialise
    if isinstance(materialise, str):
        materialise = [materialise]
    names = frozenset(materialise)
    for name in names:
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ConfigError(
                "materialise takes true/false or a list of top-level package names",
                check="materialise",
                got=repr(name),
            )
    return names


class Origin(Frozen):
    """An https origin: scheme, lowercase host, explicit port."""

    _fields = ("host", "port", "scheme")
    __slots__ = _fields

    host: str
    port: int
    scheme: str

    def __init__(self, host: str, port: int, scheme: str = "https") -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "scheme", scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(url: str) -> tuple[Origin, str]:
    """Split a repository URL into its origin and its base path (ending in ``/``).

    Refuses anything but a plain https URL (THREATS T1, T6): no userinfo
    (``https://good@evil/``), no query or fragment, no empty host.

    Raises:
        InsecureURLError: the URL is not an acceptable https URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InsecureURLError(f"not a valid URL: {exc}", check="url", url=url) from exc
    if parts.scheme != "https":
        raise InsecureURLError(
            "only https repositories are accepted",
            check="scheme",
            url=url,
            expected="https",
            got=parts.scheme or "(none)",
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InsecureURLError(
            "credentials in the URL are refused (they confuse which host is meant)",
            check="url-userinfo",
            url=url,
        )
    if not parts.hostname:
        raise InsecureURLError("the URL has no host", check="url-host", url=url)
    if parts.query or parts.fragment:
        raise InsecureURLError(
            "a repository URL may not have a query or fragment", check="url-shape", url=url
        )
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in url):
        raise InsecureURLError(
            "the URL must be printable ASCII (punycode for international hosts)",
            check="url-charset",
            url=url,
        )
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    return Origin(host=parts.hostname.lower(), port=port or 443), path


def canonical_url(url: str) -> str:
    """The one spelling of a repository URL: lowercase host, port only when
    not 443, base path ending in ``/`` (how repositories, lock files and
    dependency declarations compare URLs).

    Raises:
        InsecureURLError: as :func:`parse_origin`.
    """
    origin, base_path = parse_origin(url)
    port = "" if origin.port == 443 else f":{origin.port}"
    return f"https://{origin.host}{port}{base_path}"


def normalize_url(url: str) -> str:
    """The one spelling of a repository URL (THREATS H4 and issue 14's URL
    spellings): lowercase scheme and host, no default port, a path ending in
    ``/``.  ``https://LOCALHOST:443/r`` and ``https://localhost/r/`` are one
    repository: duplicates are detected, and state, cache and seals keyed, on
    this form.

    Raises:
        InsecureURLError: as :func:`parse_origin`.
    """
    origin, path = parse_origin(url)
    port = "" if origin.port == 443 else f":{origin.port}"
    return f"https://{origin.host}{port}{path}"
