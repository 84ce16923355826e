"""A tiny example package, published and imported by ``secure-import demo``."""

from .formal import salutation

__all__ = ["hello", "salutation"]


def hello(name: str = "world") -> str:
    """Return a friendly greeting."""
    return f"Hello, {name}! (from a signed, verified remote package)"
