"""Unit tests for secure_import.verify.envelope: DSSE signing and the attacks M1-M7, P6, P7."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_import.errors import (
    ConfigError,
    FormatError,
    SecureImportError,
    SignatureError,
    ThresholdError,
)
from secure_import.verify import envelope, strictjson
from secure_import.verify.envelope import MANIFEST_PAYLOAD_TYPE, ROOT_PAYLOAD_TYPE
from secure_import.verify.keys import PublicKey, public_key_of

PAYLOAD = b'{"_type":"secure-import/manifest","version":1}'
URL = "https://repo.example/secure-import-manifest.json"

# Key generation is cheap but not free; share a few keys across tests.
KEY_A = Ed25519PrivateKey.generate()
KEY_B = Ed25519PrivateKey.generate()
KEY_C = Ed25519PrivateKey.generate()
PUB_A = public_key_of(KEY_A)
PUB_B = public_key_of(KEY_B)
PUB_C = public_key_of(KEY_C)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode(env: bytes) -> dict[str, object]:
    doc = json.loads(env)
    assert isinstance(doc, dict)
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def verify(
    env: bytes,
    keys: list[PublicKey],
    threshold: int = 1,
    payload_type: str = MANIFEST_PAYLOAD_TYPE,
) -> envelope.Verified:
    return envelope.verify(env, payload_type=payload_type, keys=keys, threshold=threshold, url=URL)


def raw_signature(private: Ed25519PrivateKey, payload: bytes = PAYLOAD) -> str:
    return b64(private.sign(envelope.pae(MANIFEST_PAYLOAD_TYPE, payload)))


def handmade(signatures: Sequence[object], payload: bytes = PAYLOAD) -> bytes:
    return encode(
        {
            "payloadType": MANIFEST_PAYLOAD_TYPE,
            "payload": b64(payload),
            "signatures": list(signatures),
        }
    )


# --- PAE and the envelope shape -------------------------------------------------------


def test_pae_matches_the_dsse_v1_definition() -> None:
    assert envelope.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert envelope.pae("\u00e9", b"") == b"DSSEv1 2 \xc3\xa9 0 "


def test_signed_envelope_is_canonical_json_with_three_fields() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    doc = decode(env)
    assert set(doc) == {"payloadType", "payload", "signatures"}
    assert strictjson.dumps_canonical(doc) == env
    assert doc["signatures"] == [{"keyid": PUB_A.key_id, "sig": doc["signatures"][0]["sig"]}]  # type: ignore[index]


def test_signature_covers_pae_not_the_payload_alone() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    sig = base64.b64decode(decode(env)["signatures"][0]["sig"])  # type: ignore[index]
    assert PUB_A.verify(sig, envelope.pae(MANIFEST_PAYLOAD_TYPE, PAYLOAD))
    assert not PUB_A.verify(sig, PAYLOAD)


def test_round_trip_returns_exact_payload_and_signers() -> None:
    payload = b"\x00\xffarbitrary bytes, not even JSON"
    env = envelope.sign(payload, MANIFEST_PAYLOAD_TYPE, [KEY_A, KEY_B])
    result = verify(env, [PUB_A, PUB_B], threshold=2)
    assert result.payload == payload
    assert result.payload_type == MANIFEST_PAYLOAD_TYPE
    assert result.key_ids == frozenset({PUB_A.key_id, PUB_B.key_id})


def test_sign_with_the_same_key_twice_signs_once() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A, KEY_A])
    assert len(decode(env)["signatures"]) == 1  # type: ignore[arg-type]


def test_sign_without_keys_is_config_error() -> None:
    with pytest.raises(ConfigError):
        envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [])


def test_sign_with_too_many_keys_is_config_error() -> None:
    many = [Ed25519PrivateKey.generate() for _ in range(envelope.MAX_SIGNATURES + 1)]
    with pytest.raises(ConfigError):
        envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, many)


# --- M1: tampering -------------------------------------------------------------------------


def test_one_changed_payload_byte_is_a_signature_error() -> None:
    doc = decode(envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    doc["payload"] = b64(PAYLOAD.replace(b"1", b"2"))
    with pytest.raises(ThresholdError) as info:
        verify(encode(doc), [PUB_A])
    # Tampering, told apart from a wrong key: a pinned key's signature failed.
    assert info.value.check == "signature-invalid"
    assert info.value.url == URL
    assert info.value.failed_pinned_ids == (PUB_A.key_id,)
    assert info.value.verified_ids == ()
    assert f"pinned [{PUB_A.key_id[:16]}]" in str(info.value)
    assert "tampered" in str(info.value)


def test_valid_reserialisation_of_the_envelope_still_verifies() -> None:
    # The signature covers the payload bytes, not the envelope's JSON layout.
    doc = decode(envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    pretty = json.dumps(doc, indent=2).encode()
    assert verify(pretty, [PUB_A]).payload == PAYLOAD


# --- M2 / M3: key ids are hints -------------------------------------------------------------


def test_unpinned_key_claiming_pinned_key_id_is_refused() -> None:
    env = handmade([{"keyid": PUB_A.key_id, "sig": raw_signature(KEY_C)}])
    with pytest.raises(ThresholdError) as info:
        verify(env, [PUB_A])
    # The claim of a pinned id is forged: reported like tampering, never trusted.
    assert info.value.check == "signature-invalid"
    assert info.value.got == 0 and info.value.expected == 1


def test_wrong_pinned_key_is_told_apart_from_tampering() -> None:
    """The refusal names the key ids that signed and those pinned, and says
    no pinned key signed at all (a wrong key pinned, or a rotation), with its
    own check field, unlike an edited payload (check signature-invalid)."""
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ThresholdError) as info:
        verify(env, [PUB_B])
    assert info.value.check == "no-pinned-signer"
    assert info.value.signer_ids == (PUB_A.key_id,)
    assert info.value.pinned_ids == (PUB_B.key_id,)
    assert info.value.failed_pinned_ids == ()
    text = str(info.value)
    assert f"signed by key ids [{PUB_A.key_id[:16]}]" in text
    assert f"pinned [{PUB_B.key_id[:16]}]" in text
    assert "no signature by a pinned key" in text
    assert info.value.as_dict()["check"] == "no-pinned-signer"


def test_publisher_a_signature_is_refused_for_publisher_b() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ThresholdError):
        verify(env, [PUB_B])


def test_signature_with_wrong_or_empty_key_id_still_counts_for_its_real_key() -> None:
    for keyid in ("", "not-a-real-id", PUB_B.key_id):
        env = handmade([{"keyid": keyid, "sig": raw_signature(KEY_A)}])
        assert verify(env, [PUB_A, PUB_B]).key_ids == frozenset({PUB_A.key_id})


# --- M4: threshold --------------------------------------------------------------------------


def test_fewer_valid_signatures_than_threshold_is_refused() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ThresholdError) as info:
        verify(env, [PUB_A, PUB_B], threshold=2)
    assert info.value.expected == 2 and info.value.got == 1
    assert info.value.check == "threshold"
    assert info.value.verified_ids == (PUB_A.key_id,)
    assert "no signature by a pinned key" not in str(info.value)


def test_threshold_met_by_two_of_three() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A, KEY_C])
    result = verify(env, [PUB_A, PUB_B, PUB_C], threshold=2)
    assert result.key_ids == frozenset({PUB_A.key_id, PUB_C.key_id})


def test_empty_signature_list_is_refused() -> None:
    with pytest.raises(ThresholdError):
        verify(handmade([]), [PUB_A])


@pytest.mark.parametrize("threshold", [0, -1, 3, True])
def test_impossible_threshold_is_config_error(threshold: int) -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ConfigError):
        verify(env, [PUB_A, PUB_B], threshold=threshold)


def test_threshold_counts_distinct_pinned_keys_not_listed_ones() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ConfigError):
        verify(env, [PUB_A, PublicKey(PUB_A.raw)], threshold=2)


def test_no_pinned_keys_is_config_error() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(ConfigError):
        verify(env, [], threshold=1)


# --- M5: duplicates count once -------------------------------------------------------------


def test_same_signature_twice_counts_once() -> None:
    sig = raw_signature(KEY_A)
    env = handmade([{"keyid": PUB_A.key_id, "sig": sig}, {"keyid": PUB_A.key_id, "sig": sig}])
    with pytest.raises(ThresholdError) as info:
        verify(env, [PUB_A, PUB_B], threshold=2)
    assert info.value.got == 1


def test_one_key_under_two_key_ids_counts_once() -> None:
    sig = raw_signature(KEY_A)
    env = handmade([{"keyid": PUB_A.key_id, "sig": sig}, {"keyid": PUB_B.key_id, "sig": sig}])
    with pytest.raises(ThresholdError):
        verify(env, [PUB_A, PUB_B], threshold=2)


def test_same_key_pinned_twice_counts_once() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    result = verify(env, [PUB_A, PublicKey(bytes(PUB_A.raw)), PUB_B], threshold=1)
    assert result.key_ids == frozenset({PUB_A.key_id})


# --- M6: garbage signatures are ignored --------------------------------------------------------


def test_threshold_met_plus_garbage_signature_is_accepted() -> None:
    env = handmade(
        [
            {"keyid": PUB_B.key_id, "sig": b64(b"\x00" * 64)},
            {"keyid": PUB_A.key_id, "sig": raw_signature(KEY_A)},
            {"keyid": "", "sig": raw_signature(KEY_C)},
        ]
    )
    assert verify(env, [PUB_A, PUB_B]).key_ids == frozenset({PUB_A.key_id})


# --- M7: payload type -----------------------------------------------------------------------


def test_signature_for_another_payload_type_is_refused() -> None:
    env = envelope.sign(PAYLOAD, ROOT_PAYLOAD_TYPE, [KEY_A])
    with pytest.raises(SignatureError) as info:
        verify(env, [PUB_A])
    assert info.value.check == "payload-type"
    assert not isinstance(info.value, ThresholdError)


def test_relabelled_payload_type_does_not_verify() -> None:
    doc = decode(envelope.sign(PAYLOAD, ROOT_PAYLOAD_TYPE, [KEY_A]))
    doc["payloadType"] = MANIFEST_PAYLOAD_TYPE
    with pytest.raises(ThresholdError):
        verify(encode(doc), [PUB_A])


# --- P6: base64 variants and signature lengths ---------------------------------------------------


def _urlsafe(text: str) -> str:
    return text.replace("+", "-").replace("/", "_")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.rstrip("="),
        lambda s: s + "\n",
        lambda s: s[:10] + " " + s[10:],
        lambda s: s + "==",
        lambda s: "=" + s,
    ],
)
def test_non_strict_base64_signature_is_refused(mangle: Callable[[str], str]) -> None:
    env = handmade([{"keyid": PUB_A.key_id, "sig": mangle(raw_signature(KEY_A))}])
    with pytest.raises(FormatError):
        verify(env, [PUB_A])


def test_urlsafe_base64_signature_is_refused() -> None:
    while True:
        sig = raw_signature(Ed25519PrivateKey.generate())
        if "+" in sig or "/" in sig:
            break
    env = handmade([{"keyid": "", "sig": _urlsafe(sig)}])
    with pytest.raises(FormatError):
        verify(env, [PUB_A])


def test_urlsafe_base64_payload_is_refused() -> None:
    payload = b"\xfb\xff\xbf" * 4  # encodes with '+' and '/'
    doc = decode(envelope.sign(payload, MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    doc["payload"] = _urlsafe(str(doc["payload"]))
    with pytest.raises(FormatError):
        verify(encode(doc), [PUB_A])


def test_payload_with_non_zero_pad_bits_is_refused() -> None:
    doc = decode(envelope.sign(b"hi", MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    assert doc["payload"] == "aGk="
    doc["payload"] = "aGl="  # same bytes under lenient decoders
    with pytest.raises(FormatError):
        verify(encode(doc), [PUB_A])


@pytest.mark.parametrize("size", [0, 63, 65, 128])
def test_signature_of_wrong_length_is_refused(size: int) -> None:
    env = handmade(
        [
            {"keyid": PUB_A.key_id, "sig": raw_signature(KEY_A)},
            {"keyid": "", "sig": b64(b"\x01" * size)},
        ]
    )
    with pytest.raises(FormatError) as info:
        verify(env, [PUB_A])
    assert info.value.check == "signature-length"


def test_too_many_signatures_is_refused() -> None:
    good = {"keyid": PUB_A.key_id, "sig": raw_signature(KEY_A)}
    env = handmade([good] * (envelope.MAX_SIGNATURES + 1))
    with pytest.raises(FormatError):
        verify(env, [PUB_A])


def test_max_signatures_is_accepted() -> None:
    good = {"keyid": PUB_A.key_id, "sig": raw_signature(KEY_A)}
    assert verify(handmade([good] * envelope.MAX_SIGNATURES), [PUB_A]).payload == PAYLOAD


# --- P7 and shape -------------------------------------------------------------------------------


def test_unknown_envelope_field_is_refused() -> None:
    doc = decode(envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    doc["extra"] = "x"
    with pytest.raises(FormatError):
        verify(encode(doc), [PUB_A])


@pytest.mark.parametrize("field", ["payloadType", "payload", "signatures"])
def test_missing_envelope_field_is_refused(field: str) -> None:
    doc = decode(envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A]))
    del doc[field]
    with pytest.raises(FormatError):
        verify(encode(doc), [PUB_A])


@pytest.mark.parametrize(
    "entry",
    [
        {"sig": "x"},
        {"keyid": "", "sig": "x", "extra": 1},
        {"keyid": 5, "sig": "x"},
        {"keyid": "k" * 65, "sig": "x"},
        {"keyid": "", "sig": 5},
        "string",
        ["keyid", "sig"],
    ],
)
def test_malformed_signature_entry_is_refused(entry: object) -> None:
    good = {"keyid": PUB_A.key_id, "sig": raw_signature(KEY_A)}
    env = encode(
        {"payloadType": MANIFEST_PAYLOAD_TYPE, "payload": b64(PAYLOAD), "signatures": [good, entry]}
    )
    with pytest.raises(FormatError):
        verify(env, [PUB_A])


def test_key_id_of_64_characters_is_allowed() -> None:
    env = handmade([{"keyid": "k" * 64, "sig": raw_signature(KEY_A)}])
    assert verify(env, [PUB_A]).payload == PAYLOAD


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "envelope",
        {"payloadType": 1, "payload": "", "signatures": []},
        {"payloadType": MANIFEST_PAYLOAD_TYPE, "payload": 1, "signatures": []},
        {"payloadType": MANIFEST_PAYLOAD_TYPE, "payload": "", "signatures": {}},
    ],
)
def test_wrong_types_in_envelope_are_refused(doc: object) -> None:
    with pytest.raises(FormatError):
        verify(encode(doc), [PUB_A])


def test_duplicate_payload_field_is_refused() -> None:
    env = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A])
    evil = env[:-1] + b',"payload":"' + b64(b"evil").encode() + b'"}'
    with pytest.raises(FormatError):
        verify(evil, [PUB_A])


def test_non_json_envelope_is_format_error() -> None:
    with pytest.raises(FormatError):
        verify(b"\x89PNG\r\n", [PUB_A])


# --- properties ----------------------------------------------------------------------------------

SIGNED = envelope.sign(PAYLOAD, MANIFEST_PAYLOAD_TYPE, [KEY_A, KEY_B])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_secure_import_errors(data: bytes) -> None:
    try:
        verify(data, [PUB_A])
    except SecureImportError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(SIGNED) - 1),
    st.integers(0, 255),
    st.integers(0, 3),
)
def test_mutated_envelope_raises_only_secure_import_errors(
    index: int, value: int, mode: int
) -> None:
    if mode == 0:
        data = SIGNED[:index] + bytes([value]) + SIGNED[index + 1 :]
    elif mode == 1:
        data = SIGNED[:index]
    elif mode == 2:
        data = SIGNED[:index] + bytes([value]) + SIGNED[index:]
    else:
        data = SIGNED[:index] + SIGNED[index + 1 :]
    try:
        result = verify(data, [PUB_A, PUB_B], threshold=2)
    except SecureImportError:
        return
    # Anything that still verifies must carry exactly the signed payload.
    assert result.payload == PAYLOAD


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_byte_flip_in_the_payload_fails_verification(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(PAYLOAD) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(PAYLOAD)
    tampered[index] ^= flip
    doc = decode(SIGNED)
    doc["payload"] = b64(bytes(tampered))
    with pytest.raises(ThresholdError):
        verify(encode(doc), [PUB_A, PUB_B], threshold=1)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=70),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
        max_leaves=12,
    )
)
def test_arbitrary_json_envelopes_raise_only_secure_import_errors(doc: object) -> None:
    try:
        verify(encode(doc), [PUB_A])
    except SecureImportError:
        pass
