"""Attacks on signed, compressed module bundles (THREATS F1, F2, M13, T7, T8).

A large package is published split (``split_above=0``: one bundle per
package directory), so each subpackage arrives as its own signed bundle.
Every refusal is checked with the scenario's four post-conditions: the
error and its code, the canary did not run, nothing but verified objects
was written, and exactly one refusal was audited.
"""

from __future__ import annotations

import importlib
import sys
import zlib

import pytest

from secure_import.errors import HashMismatchError, LengthMismatchError
from secure_import.publish.serve import Response

from .conftest import Scenario


def _publish_split(scenario: Scenario) -> None:
    """``victim`` with two subpackages of three modules each, one bundle per directory."""
    publisher = scenario.publisher
    publisher.write("good.py", "VALUE = 1\n")
    publisher.write("victim/__init__.py", "OK = True\n")
    for sub in ("core", "extra"):
        publisher.write(f"victim/{sub}/__init__.py", f"from . import a, b, c\nNAME = {sub!r}\n")
        for name in ("a", "b", "c"):
            publisher.write(f"victim/{sub}/{name}.py", f"{name.upper()} = {sub!r}\n")
    publisher.publish(split_above=0)


def _bundle_path(scenario: Scenario, member: str) -> str:
    bundle = scenario.publisher.signed_manifest().bundle_of(member)
    assert bundle is not None
    return bundle.path


def _import_core() -> object:
    return importlib.import_module("victim.core")


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every zlib decompression object created from here on."""
    made: list[int] = []
    real = zlib.decompressobj

    def counting(*args: object, **kwargs: object) -> object:
        made.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zlib, "decompressobj", counting)
    return made


def test_f1_tampered_compressed_bundle_is_refused_before_decompression(
    scenario: Scenario, inflations: list[int]
) -> None:
    """F1: the attacker rewrites a subpackage's bundle (same length, new code):
    refused on its signed sha256, the decompressor never sees it."""
    _publish_split(scenario)
    scenario.publisher.tamper("victim/core/a.py", scenario.evil())
    scenario.warm()
    importlib.import_module("victim")  # the parent's own bundle is genuine
    inflations.clear()
    exc = scenario.refused(_import_core, HashMismatchError, "hash-mismatch")
    assert exc.url is not None and exc.url.endswith(_bundle_path(scenario, "victim/core/a.py"))
    assert inflations == [], "a bundle that failed its hash was decompressed"
    assert "victim.core" not in sys.modules


def test_t8_unsigned_decompression_bomb_is_refused_unread(
    scenario: Scenario, inflations: list[int]
) -> None:
    """T8/T7: a zlib bomb served in place of a bundle is cut at the bundle's
    signed length and refused by hash; nothing is decompressed."""
    _publish_split(scenario)
    path = _bundle_path(scenario, "victim/core/a.py")
    bomb = zlib.compress(b"\0" * 50_000_000, 9)
    scenario.publisher.respond(path, Response(body=bomb))
    scenario.warm()
    importlib.import_module("victim")
    inflations.clear()
    exc = scenario.refused(_import_core, LengthMismatchError, "length-mismatch")
    assert exc.url is not None and exc.url.endswith(path)
    assert inflations == []


def test_m13_bundle_of_another_subpackage_is_refused(
    scenario: Scenario, inflations: list[int]
) -> None:
    """M13: the server answers the request for ``victim/core``'s bundle with the
    genuine, signed bundle of ``victim/extra``: refused on the requested
    bundle's signed sha256; no module of either runs."""
    _publish_split(scenario)
    core = _bundle_path(scenario, "victim/core/a.py")
    extra = _bundle_path(scenario, "victim/extra/a.py")
    other = (scenario.publisher.out / extra).read_bytes()
    scenario.publisher.respond(core, Response(body=other))
    scenario.warm()
    importlib.import_module("victim")
    inflations.clear()
    error = _mismatch_for(core, other, scenario)
    exc = scenario.refused(_import_core, error, error.code)
    assert exc.url is not None and exc.url.endswith(core)
    assert inflations == []
    assert "victim.extra" not in sys.modules


def test_f2_bundle_with_trailing_bytes_is_cut_at_its_signed_length(scenario: Scenario) -> None:
    """F2: the genuine bundle followed by extra bytes is refused at the signed
    length + 1 (the transport stops reading)."""
    _publish_split(scenario)
    path = _bundle_path(scenario, "victim/core/a.py")
    genuine = (scenario.publisher.out / path).read_bytes()
    scenario.publisher.respond(path, Response(body=genuine + zlib.compress(scenario.evil())))
    scenario.warm()
    importlib.import_module("victim")
    scenario.refused(_import_core, LengthMismatchError, "length-mismatch")


def _mismatch_for(
    path: str, served: bytes, scenario: Scenario
) -> type[HashMismatchError] | type[LengthMismatchError]:
    signed = scenario.publisher.signed_manifest().bundles or ()
    length = next(b.length for b in signed if b.path == path)
    return HashMismatchError if len(served) == length else LengthMismatchError
