"""Unit tests for signed dependency declarations (secure_import.verify.requires):
the v2 manifest field, strict parsing (P5, P7), backward compatibility with v1,
and the refuse-only checks of publisher and range."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.errors import FormatError, PublisherMismatchError, VersionRangeError
from secure_import.verify import manifest
from secure_import.verify.keys import PublicKey, public_key_of
from secure_import.verify.manifest import FileEntry
from secure_import.verify.requires import (
    Requirement,
    check_publisher,
    check_target,
    normalize_distribution,
)
from secure_import.verify.versions import SpecifierSet

KEY = public_key_of(Ed25519PrivateKey.generate())
OTHER = public_key_of(Ed25519PrivateKey.generate())


def key_table(*keys: PublicKey) -> dict[str, object]:
    return {
        k.key_id: {"keytype": "ed25519", "public": base64.b64encode(k.raw).decode()} for k in keys
    }


def entry(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "repository": "https://mpmath.example/repo/",
        "publisher": {"keys": key_table(KEY), "threshold": 1},
        "distribution": "mpmath",
        "versions": ">=1.1.0,<1.4",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def files(paths: list[str]) -> dict[str, dict[str, object]]:
    return {p: {"sha256": hashlib.sha256(p.encode()).hexdigest(), "length": len(p)} for p in paths}


def doc(requires: object = None, spec: int | None = None, **more: object) -> dict[str, Any]:
    out: dict[str, Any] = {
        "_type": "secure-import/manifest",
        "spec_version": 1,
        "version": 3,
        "root_version": 1,
        "issued": "2026-11-20T23:00:00Z",
        "expires": "2027-02-18T23:00:00Z",
        "provides": ["sympy"],
        "files": files(["sympy/__init__.py", "sympy-1.13.dist-info/METADATA"]),
    }
    if requires is not None:
        out["spec_version"] = 2
        out["requires"] = requires
    if spec is not None:
        out["spec_version"] = spec
    out.update(more)
    return out


def parse(d: object) -> manifest.Manifest:
    return manifest.parse(json.dumps(d).encode())


def test_v1_manifest_stays_valid_and_has_no_declarations() -> None:
    parsed = parse(doc())
    assert parsed.requires == {}


def test_v2_manifest_carries_its_declarations() -> None:
    parsed = parse(doc({"mpmath": entry()}))
    req = parsed.requires["mpmath"]
    assert req.repository == "https://mpmath.example/repo/"
    assert req.key_ids == {KEY.key_id}
    assert str(req.versions) == ">=1.1.0,<1.4"
    assert req.distribution == "mpmath"
    assert "mpmath >=1.1.0,<1.4" in req.describe()


def test_build_payload_writes_v1_without_declarations_and_v2_with_them() -> None:
    when = datetime(2026, 11, 20, tzinfo=UTC)
    common: dict[str, Any] = {
        "version": 1,
        "root_version": 1,
        "issued": when,
        "expires": when,
        "provides": ["sympy"],
        "files": [FileEntry("sympy/__init__.py", "0" * 64, 0)],
    }
    v1 = json.loads(manifest.build_payload(**common))
    assert v1["spec_version"] == 1 and "requires" not in v1
    req = parse(doc({"mpmath": entry()})).requires
    v2 = manifest.build_payload(**common, requires=req)
    assert json.loads(v2)["spec_version"] == 2
    assert manifest.parse(v2).requires == req


def test_declarations_survive_the_memo_round_trip() -> None:
    parsed = parse(
        doc(
            {
                "mpmath": entry(),
                "gmpy2": entry(versions=None, distribution=None, manifest_versions=">=2"),
            }
        )
    )
    again = manifest.from_plain(manifest.to_plain(parsed))
    assert again.requires == parsed.requires


@pytest.mark.parametrize(
    "requires",
    [
        {},  # v2 with nothing declared: write v1 instead
        [],
        {"mpmath": "https://mpmath.example/"},
        {"mpmath": entry(extra=1)},  # P7: unknown field
        {"mpmath": entry(repository=None)},
        {"mpmath": entry(publisher=None)},
        {"mpmath": entry(versions=None)},  # no constraint (distribution alone)
        {"mpmath": entry(distribution=None)},  # versions without distribution
        {"mpmath": entry(manifest_sha256="0" * 64)},  # two constraints
        {"mpmath": entry(versions=None, distribution=None, manifest_sha256="0" * 63)},
        {"mpmath": entry(versions=None, distribution=None, manifest_sha256="A" * 64)},
        {"mpmath": entry(versions=None, distribution=None, manifest_versions=">=x")},
        {"mpmath": entry(versions="latest")},
        {"mpmath": entry(versions=3)},
        {"mpmath": entry(distribution="-bad-")},
        {"mpmath": entry(repository="http://mpmath.example/")},  # T1
        {"mpmath": entry(repository="https://good@evil.example/")},  # T6
        {"mpmath": entry(publisher={"keys": key_table(KEY)})},
        {"mpmath": entry(publisher={"keys": key_table(KEY), "threshold": 2})},
        {"mpmath": entry(publisher={"keys": key_table(KEY), "threshold": True})},
        {"mpmath": entry(publisher={"keys": {}, "threshold": 1})},
        {"mpmath": entry(publisher={"keys": key_table(KEY), "threshold": 1, "identity": "x"})},
        {
            "mpmath": entry(
                publisher={"keys": {OTHER.key_id: key_table(KEY)[KEY.key_id]}, "threshold": 1}
            )
        },
        {
            "mpmath": entry(
                publisher={
                    "keys": {KEY.key_id: {"keytype": "rsa", "public": "AA=="}},
                    "threshold": 1,
                }
            )
        },
        {"sympy": entry()},  # the repository's own name
        {"os": entry()},  # N2: a standard-library name
        {"secure_import": entry()},
        {"class": entry()},
        {"mp.math": entry()},
    ],
)
def test_malformed_declarations_refuse_the_whole_manifest(requires: object) -> None:
    with pytest.raises(FormatError):
        parse(doc(requires))


def test_a_v1_manifest_with_a_requires_field_is_refused() -> None:
    """P7: the field exists only in v2; a v1 parser-era document with it is malformed."""
    d = doc({"mpmath": entry()}, spec=1)
    with pytest.raises(FormatError):
        parse(d)


def test_repository_urls_are_compared_in_canonical_form() -> None:
    req = parse(doc({"mpmath": entry(repository="https://MPMATH.example:443/repo")})).requires
    assert req["mpmath"].repository == "https://mpmath.example/repo/"


def test_distribution_names_normalise() -> None:
    assert normalize_distribution("Foo_Bar.baz") == "foo-bar-baz"


# --- the checks -----------------------------------------------------------------------


def requirement(**kw: Any) -> Requirement:
    base: dict[str, Any] = {
        "name": "mpmath",
        "repository": "https://mpmath.example/repo/",
        "keys": (KEY,),
        "distribution": "mpmath",
        "versions": SpecifierSet.parse(">=1.1.0,<1.4"),
    }
    base.update(kw)
    return Requirement(**base)


def dep_manifest(version: int = 4, dist: str | None = "mpmath-1.3.0") -> manifest.Manifest:
    paths = ["mpmath/__init__.py"]
    if dist:
        paths.append(f"{dist}.dist-info/METADATA")
    d = doc(provides=["mpmath"], files=files(paths), version=version)
    return parse(d)


def test_publisher_agrees_when_a_declared_key_is_pinned() -> None:
    check_publisher(
        requirement(),
        key_ids=frozenset({KEY.key_id, OTHER.key_id}),
        what="pinned",
        declared_by="A",
        url=None,
    )


def test_publisher_of_another_key_is_refused_naming_both() -> None:
    with pytest.raises(PublisherMismatchError) as info:
        check_publisher(
            requirement(),
            key_ids=frozenset({OTHER.key_id}),
            what="pinned",
            declared_by="A",
            url=None,
        )
    text = str(info.value)
    assert KEY.key_id[:16] in text and OTHER.key_id[:16] in text
    assert info.value.code == "dependency-publisher"


def test_publisher_threshold_counts_distinct_declared_keys() -> None:
    both = requirement(keys=(KEY, OTHER), threshold=2)
    with pytest.raises(PublisherMismatchError):
        check_publisher(
            both, key_ids=frozenset({KEY.key_id}), what="signed by", declared_by="A", url=None
        )
    check_publisher(
        both,
        key_ids=frozenset({KEY.key_id, OTHER.key_id}),
        what="signed by",
        declared_by="A",
        url=None,
    )


def test_version_inside_the_range_is_accepted() -> None:
    shown = check_target(
        requirement(), manifest=dep_manifest(), envelope_digest="d" * 64, declared_by="A", url=None
    )
    assert "1.3.0" in shown


def test_version_outside_the_range_is_refused_naming_the_range() -> None:
    with pytest.raises(VersionRangeError) as info:
        check_target(
            requirement(),
            manifest=dep_manifest(dist="mpmath-1.4.1"),
            envelope_digest="d" * 64,
            declared_by="A",
            url=None,
        )
    assert ">=1.1.0,<1.4" in str(info.value) and "1.4.1" in str(info.value)


def test_a_range_cannot_be_checked_without_the_distribution_metadata() -> None:
    with pytest.raises(VersionRangeError, match="cannot be checked"):
        check_target(
            requirement(),
            manifest=dep_manifest(dist=None),
            envelope_digest="d" * 64,
            declared_by="A",
            url=None,
        )


def test_manifest_version_range_and_exact_digest() -> None:
    by_number = requirement(
        distribution=None, versions=None, manifest_versions=SpecifierSet.parse(">=4,<6")
    )
    check_target(
        by_number, manifest=dep_manifest(4), envelope_digest="d" * 64, declared_by="A", url=None
    )
    with pytest.raises(VersionRangeError):
        check_target(
            by_number, manifest=dep_manifest(6), envelope_digest="d" * 64, declared_by="A", url=None
        )
    exact = requirement(distribution=None, versions=None, manifest_sha256="d" * 64)
    check_target(
        exact, manifest=dep_manifest(), envelope_digest="d" * 64, declared_by="A", url=None
    )
    with pytest.raises(VersionRangeError):
        check_target(
            exact, manifest=dep_manifest(), envelope_digest="e" * 64, declared_by="A", url=None
        )


def test_parsing_does_not_alias_the_input() -> None:
    raw = {"mpmath": entry()}
    kept = copy.deepcopy(raw)
    parse(doc(raw))
    assert raw == kept
