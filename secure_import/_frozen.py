"""Small immutable records without :mod:`dataclasses`.

``dataclasses`` imports :mod:`inspect` (and with it ``ast``, ``dis``,
``tokenize``...) and generates every method with ``exec`` when a class is
defined: about 10 ms of every process that imports secure_import, before any
module is imported.  The records on the path of an import (limits, paths,
keys, roots, manifests, high-water marks) are a handful of fields each, so
they derive from :class:`Frozen` instead: the subclass lists its fields in
``_fields`` (in order; ``__slots__ = _fields``) and sets them in ``__init__``
with ``object.__setattr__``; this
base adds what a frozen dataclass has (no assignment, equality and hash over
the fields, a readable ``repr``, pickling and copying).
"""

from __future__ import annotations

__all__ = ["Frozen"]


class Frozen:
    """Base of a record whose fields are ``_fields`` (its slots), in order.

    ``_unhashed`` names fields left out of the hash (still compared), as
    ``field(hash=False)`` does for a dataclass.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _unhashed: frozenset[str] = frozenset()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        unhashed = self._unhashed
        return hash(tuple(getattr(self, name) for name in self._fields if name not in unhashed))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._fields}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
