"""Repository URLs for a signed repository committed to GitHub or GitLab.

Publish with ``secure-import sign src --key k.key --out site/``, commit ``site/``
and push; then point consumers at the raw-file URL of that folder at a fixed
ref::

    url = secure_import.publish.githost.github_url("alice", "tools", "3f2c9e1...", "site")
    secure_import.add_repo(url, keys=["alice.pub"])

Prefer a full commit SHA as ``ref``: a tag or branch can be moved by whoever
controls the Git repository.  (The signature still protects you either way;
a fixed commit also pins *which* signed version you get, subject to the
manifest's expiry.)  Trust comes from the pinned keys, never from the host.

Every component is validated strictly so that a value taken from
configuration can never change the host or climb out of the repository:
owner and repository names may not contain ``/``, ``..``, ``@``, ``%``,
``\\``, whitespace or control characters; a ref may contain ``/`` (branch
names like ``release/1.2``) but no empty, ``.`` or ``..`` segment.
"""

from __future__ import annotations

import re

from secure_import.errors import ConfigError

__all__ = ["github_url", "gitlab_url"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}")
_GITLAB_GROUP = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,254})*"
)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"invalid {what}: letters, digits, '_', '-' and '.' only (no '/', '..', '@')",
            check="githost",
            got=repr(value),
        )
    return value


def _segments(value: object, what: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"invalid {what}", check="githost", got=repr(value))
    text = value.strip("/") if allow_empty else value
    if not text:
        if allow_empty:
            return ""
        raise ConfigError(f"{what} may not be empty", check="githost")
    for part in text.split("/"):
        if part in ("", ".", "..") or not _SEGMENT.fullmatch(part):
            raise ConfigError(
                f"invalid {what}: each '/'-separated part must be letters, digits, "
                "'_', '-', '+' or '.', and not empty, '.' or '..'",
                check="githost",
                got=repr(value),
            )
    return text


def _finish(base: str, path: str) -> str:
    return base + (path + "/" if path else "")


def github_url(owner: str, repo: str, ref: str, path: str = "") -> str:
    """``https://raw.githubusercontent.com/OWNER/REPO/REF/PATH/``.

    Args:
        owner, repo: the GitHub account and repository.
        ref: a commit SHA (recommended), tag or branch.
        path: the folder holding ``secure-import-manifest.json`` ("" for the root).

    Raises:
        ConfigError: a component is not of an accepted shape.
    """
    owner = _name(owner, "GitHub owner")
    repo = _name(repo, "GitHub repository")
    ref = _segments(ref, "ref", allow_empty=False)
    path = _segments(path, "path", allow_empty=True)
    return _finish(f"https://raw.githubusercontent.com/{owner}/{repo}/{ref}/", path)


def gitlab_url(owner: str, repo: str, ref: str, path: str = "", *, host: str = "gitlab.com") -> str:
    """``https://gitlab.com/OWNER/REPO/-/raw/REF/PATH/``.

    ``owner`` may be a nested group path (``group/subgroup``).  ``host`` lets
    a self-managed GitLab be named (a bare lowercase host name, no port).

    Raises:
        ConfigError: a component is not of an accepted shape.
    """
    if not isinstance(owner, str) or not _GITLAB_GROUP.fullmatch(owner) or ".." in owner:
        raise ConfigError(
            "invalid GitLab owner: group path of letters, digits, '_', '-', '.'",
            check="githost",
            got=repr(owner),
        )
    repo = _name(repo, "GitLab repository")
    ref = _segments(ref, "ref", allow_empty=False)
    path = _segments(path, "path", allow_empty=True)
    if not isinstance(host, str) or not re.fullmatch(
        r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+", host
    ):
        raise ConfigError("invalid GitLab host name", check="githost", got=repr(host))
    return _finish(f"https://{host}/{owner}/{repo}/-/raw/{ref}/", path)
