"""Unit tests for secure_import.verify.versions: PEP 440 ordering and ranges
(what a signed dependency declaration accepts)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secure_import.errors import FormatError
from secure_import.verify.versions import SpecifierSet, Version, parse_version

ORDERED = [
    "0.9",
    "1.0.dev1",
    "1.0a1.dev1",
    "1.0a1",
    "1.0b2",
    "1.0rc1",
    "1.0",
    "1.0.post1.dev1",
    "1.0.post1",
    "1.0.1",
    "1.1",
    "2.0",
    "1!0.1",
]


def test_pep440_order_holds_for_the_whole_ladder() -> None:
    parsed = [parse_version(v) for v in ORDERED]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == len(parsed)


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("1.0-alpha1", "1.0a1"),
        ("1.0.beta", "1.0b0"),
        ("1.0c1", "1.0rc1"),
        ("1.0-1", "1.0.post1"),
        ("1.0.rev2", "1.0.post2"),
        ("V2.0.DEV", "2.0.dev0"),
        ("1.0+Ubuntu.1", "1.0+ubuntu.1"),
    ],
)
def test_spellings_normalise(spelling: str, normal: str) -> None:
    assert str(parse_version(spelling)) == normal


def test_trailing_zeros_do_not_matter() -> None:
    assert parse_version("1.0") == parse_version("1.0.0")


@pytest.mark.parametrize(
    "bad", ["", "one", "1..0", "1.0-", "1.0+", "x1.0", "1" * 13, "1.0" * 80, None, 3]
)
def test_malformed_versions_are_refused(bad: object) -> None:
    with pytest.raises(FormatError):
        parse_version(bad)


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (">=1.1.0,<1.4", ["1.1", "1.3.0", "1.3.99"], ["1.0.9", "1.4", "1.4.0", "2"]),
        ("~=1.4.2", ["1.4.2", "1.4.9"], ["1.4.1", "1.5", "2.0"]),
        ("~=1.4", ["1.4", "1.9"], ["1.3", "2.0"]),
        ("==1.*", ["1", "1.0", "1.9.9"], ["2.0", "0.9"]),
        ("!=1.2.*", ["1.1", "1.3"], ["1.2", "1.2.7"]),
        ("==1.3", ["1.3", "1.3.0"], ["1.3.1", "1.3.post1"]),
        (">1.7", ["1.8", "1.7.1"], ["1.7", "1.7.post1"]),
        ("<1.7", ["1.6"], ["1.7", "1.7a1"]),
        (">=3", ["3", "7", "2026"], ["2"]),
        (">=1.0a1", ["1.0a1", "1.0", "1.1b1"], ["1.0.dev1"]),
    ],
)
def test_ranges_accept_inside_and_refuse_outside(
    spec: str, inside: list[str], outside: list[str]
) -> None:
    parsed = SpecifierSet.parse(spec)
    for text in inside:
        assert parsed.contains(parse_version(text)), (spec, text)
    for text in outside:
        assert not parsed.contains(parse_version(text)), (spec, text)


def test_a_range_never_admits_an_unannounced_prerelease() -> None:
    """A publisher's pre-release must not slip into a range that named only
    releases (PEP 440's default)."""
    assert not SpecifierSet.parse(">=1.0").contains(parse_version("2.0rc1"))
    assert not SpecifierSet.parse(">=1.0").contains(parse_version("2.0.dev3"))


def test_a_local_label_is_compared_by_its_public_version() -> None:
    assert SpecifierSet.parse(">=1.0,<2").contains(parse_version("1.5+vendor.3"))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1.0",
        "=1.0",
        "===1.0",
        ">=1.*",
        "~=1",
        "==1.0a1.*",
        ">=1.0+local",
        ">=1.0,",
        ",".join([">=1"] * 17),
        ">=" + "1." * 120 + "1",
        None,
    ],
)
def test_malformed_ranges_are_refused(bad: object) -> None:
    with pytest.raises(FormatError) as info:
        SpecifierSet.parse(bad)
    assert info.value.check == "version-range"


def test_ranges_print_as_parsed() -> None:
    assert str(SpecifierSet.parse(" >=1.1.0 , <1.4 ")) == ">=1.1.0,<1.4"


@given(
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)),
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)),
)
def test_release_order_is_tuple_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va = parse_version(".".join(map(str, a)))
    vb = parse_version(".".join(map(str, b)))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
    ge = SpecifierSet.parse(f">={vb}")
    assert ge.contains(va) == (a >= b)


def test_version_is_not_comparable_with_strings() -> None:
    with pytest.raises(TypeError):
        _ = Version(0, (1,)) < "1"  # type: ignore[operator]
