"""A subpackage reached through a relative import."""

from ..words import polite


def salutation(name: str) -> str:
    """Return a formal greeting."""
    return f"{polite().capitalize()}, {name}."
