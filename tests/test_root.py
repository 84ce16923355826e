"""Unit tests for secure_import.verify.root: trust root documents for key rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_import.errors import ConfigError, FormatError, SignatureError
from secure_import.verify import envelope, root
from secure_import.verify.keys import PublicKey, public_key_of
from secure_import.verify.root import Root

KEY_A = Ed25519PrivateKey.generate()
KEY_B = Ed25519PrivateKey.generate()
PUB_A = public_key_of(KEY_A)
PUB_B = public_key_of(KEY_B)
URL = "https://repo.example/root.json"


def key_entry(key: PublicKey) -> dict[str, str]:
    return {"keytype": "ed25519", "public": base64.b64encode(key.raw).decode()}


def make_doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "_type": "secure-import/root",
        "spec_version": 1,
        "version": 2,
        "expires": "2036-01-01T00:00:00Z",
        "threshold": 1,
        "keys": {PUB_A.key_id: key_entry(PUB_A), PUB_B.key_id: key_entry(PUB_B)},
    }
    doc.update(overrides)
    return doc


def parse_doc(doc: object) -> Root:
    return root.parse(json.dumps(doc).encode(), url=URL)


def refused(doc: object) -> FormatError:
    with pytest.raises(FormatError) as info:
        parse_doc(doc)
    assert info.value.url == URL
    return info.value


# --- accepted roots ------------------------------------------------------------------------


def test_valid_root_is_parsed_with_keys_sorted_by_id() -> None:
    r = parse_doc(make_doc(threshold=2))
    assert r.version == 2
    assert r.threshold == 2
    assert r.expires == datetime(2036, 1, 1, tzinfo=UTC)
    assert [k.key_id for k in r.keys] == sorted([PUB_A.key_id, PUB_B.key_id])
    assert r.key_ids == frozenset({PUB_A.key_id, PUB_B.key_id})


def test_build_payload_round_trip() -> None:
    original = Root.from_keys(
        [PUB_B, PUB_A], 2, version=7, expires=datetime(2030, 5, 1, tzinfo=UTC)
    )
    payload = root.build_payload(original)
    assert root.parse(payload) == original
    doc = json.loads(payload)
    assert payload == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert set(doc["keys"]) == {PUB_A.key_id, PUB_B.key_id}


def test_root_sign_verify_parse_round_trip() -> None:
    payload = root.build_payload(Root.from_keys([PUB_A, PUB_B], 2, version=2))
    env = envelope.sign(payload, envelope.ROOT_PAYLOAD_TYPE, [KEY_A, KEY_B])
    verified = envelope.verify(
        env, payload_type=envelope.ROOT_PAYLOAD_TYPE, keys=[PUB_A, PUB_B], threshold=2
    )
    assert root.parse(verified.payload).version == 2


def test_root_envelope_is_refused_as_a_manifest() -> None:
    payload = root.build_payload(Root.from_keys([PUB_A]))
    env = envelope.sign(payload, envelope.ROOT_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(SignatureError):
        envelope.verify(env, payload_type=envelope.MANIFEST_PAYLOAD_TYPE, keys=[PUB_A], threshold=1)


# --- from_keys --------------------------------------------------------------------------


def test_from_keys_defaults_to_far_future_and_threshold_one() -> None:
    r = Root.from_keys([PUB_A])
    assert r.threshold == 1 and r.version == 1
    assert r.expires == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert root.parse(root.build_payload(r)) == r


def test_from_keys_counts_a_duplicate_key_once() -> None:
    r = Root.from_keys([PUB_A, PublicKey(bytes(PUB_A.raw))])
    assert len(r.keys) == 1
    with pytest.raises(ConfigError):
        Root.from_keys([PUB_A, PublicKey(bytes(PUB_A.raw))], 2)


@pytest.mark.parametrize("threshold", [0, -1, 3, True, "1"])
def test_from_keys_refuses_impossible_threshold(threshold: object) -> None:
    with pytest.raises(ConfigError):
        Root.from_keys([PUB_A, PUB_B], threshold)  # type: ignore[arg-type]


def test_from_keys_refuses_no_keys() -> None:
    with pytest.raises(ConfigError):
        Root.from_keys([])


def test_from_keys_refuses_non_keys() -> None:
    with pytest.raises(ConfigError):
        Root.from_keys([PUB_A.raw])  # type: ignore[list-item]


@pytest.mark.parametrize("version", [0, True, 2**53 + 1, "1"])
def test_from_keys_refuses_bad_version(version: object) -> None:
    with pytest.raises(ConfigError):
        Root.from_keys([PUB_A], version=version)  # type: ignore[arg-type]


def test_from_keys_refuses_naive_expiry() -> None:
    with pytest.raises(ConfigError):
        Root.from_keys([PUB_A], expires=datetime(2030, 1, 1))


def test_from_keys_normalises_expiry_to_utc_seconds() -> None:
    expiry = datetime(2030, 1, 1, 2, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    assert Root.from_keys([PUB_A], expires=expiry).expires == datetime(2030, 1, 1, tzinfo=UTC)


# --- refused documents -------------------------------------------------------------------


def test_key_id_not_derived_from_key_material_is_refused() -> None:
    doc = make_doc(keys={PUB_B.key_id: key_entry(PUB_A)})
    assert refused(doc).check == "key-id"


def test_one_key_under_two_ids_is_refused() -> None:
    refused(make_doc(keys={PUB_A.key_id: key_entry(PUB_A), "0" * 64: key_entry(PUB_A)}))


def test_uppercase_key_id_is_refused() -> None:
    refused(make_doc(keys={PUB_A.key_id.upper(): key_entry(PUB_A)}))


@pytest.mark.parametrize("threshold", [0, -1, 3, True, "1", None, 1.5])
def test_threshold_out_of_range_or_wrong_type_is_refused(threshold: object) -> None:
    refused(make_doc(threshold=threshold))


@pytest.mark.parametrize("version", [0, -1, 2**53 + 1, True, "2", None])
def test_wrong_version_is_refused(version: object) -> None:
    refused(make_doc(version=version))


@pytest.mark.parametrize(
    "overrides",
    [
        {"_type": "secure-import/manifest"},
        {"spec_version": 2},
        {"spec_version": True},
        {"expires": "2036-01-01"},
        {"expires": 2082758400},
        {"keys": {}},
        {"keys": []},
        {"keys": None},
    ],
)
def test_wrong_header_values_are_refused(overrides: dict[str, object]) -> None:
    refused(make_doc(**overrides))


def test_unknown_field_is_refused() -> None:
    refused(make_doc(consistent_snapshot=True))


@pytest.mark.parametrize(
    "field", ["_type", "spec_version", "version", "expires", "threshold", "keys"]
)
def test_missing_field_is_refused(field: str) -> None:
    doc = make_doc()
    del doc[field]
    refused(doc)


@pytest.mark.parametrize(
    "entry",
    [
        {"keytype": "rsa", "public": base64.b64encode(PUB_A.raw).decode()},
        {"keytype": "ED25519", "public": base64.b64encode(PUB_A.raw).decode()},
        {"keytype": "ed25519"},
        {"keytype": "ed25519", "public": base64.b64encode(PUB_A.raw).decode(), "scheme": "x"},
        {"keytype": "ed25519", "public": base64.b64encode(PUB_A.raw[:31]).decode()},
        {"keytype": "ed25519", "public": base64.b64encode(PUB_A.raw + b"\x00").decode()},
        {"keytype": "ed25519", "public": base64.urlsafe_b64encode(PUB_A.raw).decode().rstrip("=")},
        {"keytype": "ed25519", "public": PUB_A.to_pem().decode()},
        {"keytype": "ed25519", "public": 5},
        "ed25519",
    ],
)
def test_malformed_key_entries_are_refused(entry: object) -> None:
    refused(make_doc(keys={PUB_A.key_id: entry}))


def test_duplicate_keys_field_is_refused() -> None:
    payload = json.dumps(make_doc()).encode()
    evil = payload[:-1] + b', "threshold": 2}'
    with pytest.raises(FormatError):
        root.parse(evil)


def test_build_payload_refuses_an_invalid_root() -> None:
    bad = Root(version=1, expires=datetime(2030, 1, 1, tzinfo=UTC), threshold=3, keys=(PUB_A,))
    with pytest.raises(FormatError):
        root.build_payload(bad)
    duplicated = Root(
        version=1, expires=datetime(2030, 1, 1, tzinfo=UTC), threshold=1, keys=(PUB_A, PUB_A)
    )
    with pytest.raises(FormatError):
        root.build_payload(duplicated)


_scalars = st.none() | st.booleans() | st.integers(-2, 2**54) | st.text(max_size=10)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "_type": st.just("secure-import/root") | _scalars,
            "spec_version": st.just(1) | _scalars,
            "version": st.integers(-1, 3) | _scalars,
            "expires": st.just("2036-01-01T00:00:00Z") | _scalars,
            "threshold": st.integers(-1, 3) | _scalars,
            "keys": st.dictionaries(
                st.sampled_from([PUB_A.key_id, PUB_B.key_id, ""]) | st.text(max_size=4),
                st.fixed_dictionaries(
                    {
                        "keytype": st.just("ed25519") | _scalars,
                        "public": st.sampled_from([key_entry(PUB_A)["public"], "AAAA"]) | _scalars,
                    }
                )
                | _scalars,
                max_size=3,
            )
            | _scalars,
        },
        optional={"extra": _scalars},
    )
)
def test_arbitrary_root_like_dicts_raise_only_format_errors(doc: object) -> None:
    try:
        r = parse_doc(doc)
    except FormatError:
        return
    assert 1 <= r.threshold <= len(r.keys)
    assert root.parse(root.build_payload(r)) == r
