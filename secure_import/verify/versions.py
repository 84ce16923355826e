"""Version numbers and version ranges (pure): what a dependency declaration accepts.

A declaration in a signed manifest (:mod:`secure_import.verify.requires`)
accepts a range of the dependency's versions.  Two kinds of version are
compared with the same rules:

- a distribution version, the ``VERSION`` of the ``NAME-VERSION.dist-info``
  directory the dependency's own signed manifest lists (``1.3.0``);
- a manifest version, the integer every signed manifest carries (``7``),
  for repositories without distribution metadata.

The rules are those of PEP 440 (the ones ``Requires-Dist`` uses), for the
subset a signed declaration needs; they are written out here because the
verifier may not depend on a third-party parser.

Invariants:

- parsing is strict: a version or range that does not match the grammar is a
  :class:`~secure_import.errors.FormatError`, never a best guess (``===`` and
  arbitrary strings are refused);
- ordering is PEP 440's: epoch, release (trailing zeros ignored), then
  ``.devN`` < ``aN`` < ``bN`` < ``rcN`` < final < ``.postN``; a local label
  (``+ubuntu1``) is parsed but never satisfies a range by itself: ranges
  compare the public version only;
- a pre-release or development version is accepted only by a range that
  names one (PEP 440's default), so a range never admits an unannounced
  pre-release;
- inputs are bounded (length, number of clauses, size of each number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from secure_import.errors import FormatError

__all__ = ["MAX_SPEC_LENGTH", "Specifier", "SpecifierSet", "Version", "parse_version"]

#: Longest version or range text accepted.
MAX_SPEC_LENGTH = 200
_MAX_CLAUSES = 16
_MAX_NUMBER_DIGITS = 12

_VERSION = re.compile(
    r"""
    v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PRE_ORDER = {"a": 0, "b": 1, "rc": 2}
_PRE_ALIASES = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
_CLAUSE = re.compile(r"\s*(~=|==|!=|<=|>=|<|>)\s*([^\s,]+)\s*")
_OPERATORS = ("~=", "==", "!=", "<=", ">=", "<", ">")


def _error(message: str, got: object) -> FormatError:
    return FormatError(message, check="version-range", got=repr(got)[:120])


def _number(text: str, whole: str) -> int:
    if len(text) > _MAX_NUMBER_DIGITS:
        raise _error(f"a version number has more than {_MAX_NUMBER_DIGITS} digits", whole)
    return int(text)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed PEP 440 version (public part ordered, local label kept)."""

    epoch: int
    release: tuple[int, ...]
    pre: tuple[str, int] | None = None
    post: int | None = None
    dev: int | None = None
    local: str | None = None

    @property
    def is_prerelease(self) -> bool:
        return self.pre is not None or self.dev is not None

    @property
    def public(self) -> Version:
        return Version(self.epoch, self.release, self.pre, self.post, self.dev)

    def _key(self) -> tuple[object, ...]:
        release = list(self.release)
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        # Sort markers: a final release sorts after its pre-releases, and a
        # bare .devN (no pre, no post) before its first pre-release.
        if self.pre is None and self.post is None and self.dev is not None:
            pre: tuple[int, int] = (-1, 0)
        elif self.pre is None:
            pre = (3, 0)
        else:
            pre = (_PRE_ORDER[self.pre[0]], self.pre[1])
        post = -1 if self.post is None else self.post
        dev = float("inf") if self.dev is None else self.dev
        return (self.epoch, tuple(release), pre, post, dev)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key() and self.local == other.local

    def __hash__(self) -> int:
        return hash((self._key(), self.local))

    def __str__(self) -> str:
        text = f"{self.epoch}!" if self.epoch else ""
        text += ".".join(str(n) for n in self.release)
        if self.pre is not None:
            text += f"{self.pre[0]}{self.pre[1]}"
        if self.post is not None:
            text += f".post{self.post}"
        if self.dev is not None:
            text += f".dev{self.dev}"
        if self.local is not None:
            text += f"+{self.local}"
        return text


def parse_version(text: object) -> Version:
    """Parse a PEP 440 version (normalising spellings such as ``1.0-alpha1``).

    Raises:
        FormatError: ``text`` is not a PEP 440 version or is too long.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_SPEC_LENGTH:
        raise _error("a version must be a non-empty string of at most 200 characters", text)
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise _error("not a PEP 440 version", text)
    release = tuple(_number(part, text) for part in match["release"].split("."))
    pre = None
    if match["pre_l"]:
        label = match["pre_l"].lower()
        pre = (_PRE_ALIASES.get(label, label), _number(match["pre_n"] or "0", text))
    post_text = match["post_n1"] or match["post_n2"]
    post = None
    if post_text is not None or match["post_l"]:
        post = _number(post_text or "0", text)
    dev = _number(match["dev_n"] or "0", text) if match["dev_l"] else None
    return Version(
        epoch=_number(match["epoch"] or "0", text),
        release=release,
        pre=pre,
        post=post,
        dev=dev,
        local=match["local"].lower() if match["local"] else None,
    )


@dataclass(frozen=True)
class Specifier:
    """One clause of a range: an operator and a version (``>=1.1``, ``==1.*``)."""

    operator: str
    version: Version
    #: ``==1.*`` / ``!=1.*``: compare release prefixes.
    wildcard: bool = False

    def __str__(self) -> str:
        shown = str(self.version)
        return f"{self.operator}{shown}{'.*' if self.wildcard else ''}"

    def contains(self, candidate: Version) -> bool:
        """Whether ``candidate`` (its public part) satisfies this clause alone."""
        v = candidate.public
        mine = self.version
        op = self.operator
        if self.wildcard:
            inside = _prefix_match(v, mine)
            return inside if op == "==" else not inside
        if op == "==":
            return v == mine
        if op == "!=":
            return v != mine
        if op == ">=":
            return v >= mine
        if op == "<=":
            return v <= mine
        if op == ">":
            # ">1.7" does not admit 1.7.post1 (PEP 440), unless it names a post-release.
            if not v > mine:
                return False
            return mine.post is not None or not _same_release(v, mine) or v.post is None
        if op == "<":
            # "<1.7" does not admit 1.7a1 unless it names a pre-release itself.
            if not v < mine:
                return False
            return mine.is_prerelease or not _same_release(v, mine) or not v.is_prerelease
        # "~=1.4.2" is ">=1.4.2, ==1.4.*".
        prefix = Version(mine.epoch, mine.release[:-1])
        return v >= mine and _prefix_match(v, prefix)


def _same_release(a: Version, b: Version) -> bool:
    return a.epoch == b.epoch and _trim(a.release) == _trim(b.release)


def _trim(release: tuple[int, ...]) -> tuple[int, ...]:
    out = list(release)
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return tuple(out)


def _prefix_match(v: Version, prefix: Version) -> bool:
    if v.epoch != prefix.epoch:
        return False
    size = len(prefix.release)
    padded = v.release + (0,) * max(0, size - len(v.release))
    return padded[:size] == prefix.release


@dataclass(frozen=True)
class SpecifierSet:
    """A range: clauses joined by commas, every one of which must hold."""

    clauses: tuple[Specifier, ...]

    @classmethod
    def parse(cls, text: object) -> SpecifierSet:
        """Parse ``">=1.1.0,<1.4"`` (PEP 440 specifiers, no ``===``).

        Raises:
            FormatError: empty, too long, too many clauses, an unknown operator
                or a malformed version.
        """
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_SPEC_LENGTH:
            raise _error(
                "a version range must be a non-empty string of at most 200 characters", text
            )
        parts = text.split(",")
        if len(parts) > _MAX_CLAUSES:
            raise _error(f"a version range has at most {_MAX_CLAUSES} clauses", text)
        clauses = []
        for part in parts:
            match = _CLAUSE.fullmatch(part)
            if match is None or match[2].startswith("="):
                raise _error(
                    f"each clause is one of {' '.join(_OPERATORS)} followed by a version", text
                )
            op, raw = match[1], match[2]
            wildcard = raw.endswith(".*")
            if wildcard:
                if op not in ("==", "!="):
                    raise _error("only == and != take a .* wildcard", text)
                raw = raw[:-2]
            version = parse_version(raw)
            if wildcard and (version.is_prerelease or version.post is not None):
                raise _error("a .* wildcard follows a release number only", text)
            if version.local is not None and op not in ("==", "!="):
                raise _error("a local version label is only allowed with == and !=", text)
            if op == "~=" and len(version.release) < 2:
                raise _error("~= needs at least two release numbers (~=1.4)", text)
            clauses.append(Specifier(op, version, wildcard))
        return cls(tuple(clauses))

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.clauses)

    @property
    def names_prerelease(self) -> bool:
        return any(c.version.is_prerelease for c in self.clauses)

    def contains(self, candidate: Version) -> bool:
        """Whether ``candidate`` lies in the range (pre-releases only if named)."""
        if candidate.is_prerelease and not self.names_prerelease:
            return False
        return all(clause.contains(candidate) for clause in self.clauses)
