"""Unit tests for secure_import.verify.strictjson: the parser attacks P1-P4."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_import.errors import FormatError
from secure_import.verify import strictjson


def refused(data: bytes, **kwargs: object) -> FormatError:
    with pytest.raises(FormatError) as info:
        strictjson.loads(data, what="manifest", **kwargs)  # type: ignore[arg-type]
    assert info.value.check == "json"
    assert "manifest" in str(info.value)
    return info.value


# --- accepted documents ---------------------------------------------------------


def test_plain_object_is_decoded() -> None:
    doc = strictjson.loads(b'{"a": [1, -2, "x", true, false, null], "b": {}}', what="manifest")
    assert doc == {"a": [1, -2, "x", True, False, None], "b": {}}


def test_surrounding_json_whitespace_is_allowed() -> None:
    assert strictjson.loads(b" \t\r\n[1]\n ", what="manifest") == [1]


def test_valid_surrogate_pair_escape_is_allowed() -> None:
    assert strictjson.loads(b'"\\ud83d\\ude00"', what="x") == "\U0001f600"


def test_twenty_digit_integer_is_allowed() -> None:
    assert strictjson.loads(b"-" + b"9" * 20, what="x") == -int("9" * 20)


def test_nesting_exactly_at_the_limit_is_allowed() -> None:
    assert strictjson.loads(b"[" * 32 + b"]" * 32, what="x") is not None


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"k": "[" * 1000 + '\\"{' * 100}).encode()
    assert strictjson.loads(text, what="x") == {"k": "[" * 1000 + '\\"{' * 100}


def test_escaped_backslash_before_closing_quote_ends_the_string() -> None:
    # "\\" then a real bracket: the scanner must see the string closed.
    assert strictjson.loads(b'["\\\\", [1]]', what="x") == ["\\", [1]]


def test_url_is_attached_to_the_error() -> None:
    err = refused(b"{", url="https://example.test/m.json")
    assert err.url == "https://example.test/m.json"


# --- P1: truncated, trailing bytes, invalid UTF-8, lone surrogates ---------------


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"a": 1', b'{"a": 1}}', b'{"a": 1} x', b"[1] [2]", b"\x00[1]", b"[1]\x00"],
)
def test_truncated_or_trailing_garbage_json_is_refused(data: bytes) -> None:
    refused(data)


def test_invalid_utf8_is_refused() -> None:
    refused(b'{"a": "\xff"}')


def test_utf8_encoded_surrogate_is_refused() -> None:
    refused(b'"\xed\xa0\x80"')


def test_overlong_utf8_encoding_is_refused() -> None:
    refused(b'"\xc0\xaf"')


def test_utf8_bom_is_refused() -> None:
    refused(b"\xef\xbb\xbf{}")


def test_utf16_document_is_refused() -> None:
    refused('{"a": 1}'.encode("utf-16"))


@pytest.mark.parametrize("space", [b"\x0c", b"\xc2\xa0", b"\xe3\x80\x80", b"\x0b"])
def test_non_json_whitespace_around_document_is_refused(space: bytes) -> None:
    refused(space + b"[1]")
    refused(b"[1]" + space)


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\ude00\\ud83d"])
def test_lone_surrogate_string_value_is_refused(escape: bytes) -> None:
    refused(b'{"a": "' + escape + b'"}')
    refused(b'["x", ["' + escape + b'"]]')


def test_lone_surrogate_object_key_is_refused() -> None:
    refused(b'{"\\ud800": 1}')


def test_raw_control_character_in_string_is_refused() -> None:
    refused(b'["a\nb"]')


def test_non_bytes_input_is_refused_as_format_error() -> None:
    with pytest.raises(FormatError):
        strictjson.loads("[1]", what="x")  # type: ignore[arg-type]


# --- P2: duplicate keys -----------------------------------------------------------


def test_duplicate_version_key_is_refused() -> None:
    err = refused(b'{"version": 1, "version": 99}')
    assert "duplicate" in str(err)


def test_duplicate_key_in_nested_object_is_refused() -> None:
    refused(b'{"files": [{"a": 1, "b": 2, "a": 1}]}')


def test_keys_differing_only_by_escape_are_duplicates() -> None:
    refused(b'{"a": 1, "\\u0061": 2}')


# --- P3: numbers ----------------------------------------------------------------


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_constants_are_refused(literal: bytes) -> None:
    refused(b'{"version": ' + literal + b"}")


@pytest.mark.parametrize("literal", [b"1.0", b"1e999", b"-1e-999", b"0.5", b"1E2", b"-0.0"])
def test_every_float_is_refused(literal: bytes) -> None:
    refused(b"[" + literal + b"]")


def test_five_thousand_digit_integer_is_refused() -> None:
    err = refused(b'{"version": ' + b"7" * 5000 + b"}")
    assert "5000 digits" in str(err)


def test_twenty_one_digit_integer_is_refused() -> None:
    refused(b"1" + b"0" * 20)
    refused(b"-1" + b"0" * 20)


# --- P4: nesting -----------------------------------------------------------------


def test_deeply_nested_arrays_are_refused_without_crash() -> None:
    err = refused(b"[" * 100_000 + b"]" * 100_000)
    assert "nesting" in str(err)


def test_deeply_nested_unterminated_arrays_are_refused() -> None:
    refused(b"[" * 1_000_000)


def test_deep_objects_are_refused() -> None:
    refused(b'{"a":' * 40 + b"1" + b"}" * 40)


def test_nesting_one_over_the_limit_is_refused() -> None:
    refused(b"[" * 33 + b"]" * 33)


def test_custom_max_depth_is_honoured() -> None:
    assert strictjson.loads(b"[[1]]", what="x", max_depth=2) == [[1]]
    with pytest.raises(FormatError):
        strictjson.loads(b"[[[1]]]", what="x", max_depth=2)


def test_unterminated_string_with_many_escaped_quotes_is_refused_quickly() -> None:
    refused(b'["' + b'\\"' * 200_000)


# --- canonical dumps ---------------------------------------------------------------


def test_dumps_canonical_sorts_keys_and_removes_spaces() -> None:
    assert strictjson.dumps_canonical({"b": 1, "a": [1, "\u00e9"]}) == b'{"a":[1,"\\u00e9"],"b":1}'


def test_dumps_canonical_refuses_nan() -> None:
    with pytest.raises(ValueError):
        strictjson.dumps_canonical({"a": float("nan")})


def test_canonical_output_loads_back_to_the_same_object() -> None:
    obj = {"z": {"y": [1, 2, {"x": "\u2603"}]}, "a": None}
    assert strictjson.loads(strictjson.dumps_canonical(obj), what="x") == obj


# --- strict base64 -------------------------------------------------------------------


def test_strict_base64_accepts_canonical_standard_base64() -> None:
    assert strictjson.b64decode_strict("+/+/aGk=", what="sig") == b"\xfb\xff\xbfhi"


@pytest.mark.parametrize(
    "text",
    [
        "aGk-Pz8_",  # URL-safe alphabet
        "aGk",  # missing padding
        "aGk=\n",  # trailing newline
        "aG k=",  # inner whitespace
        "aGl=",  # non-zero pad bits: decodes, but is not canonical
        "aGk==",  # extra padding
        "aGk=aGk=",  # padding in the middle
        "\u00e9",  # non-ASCII
    ],
)
def test_base64_variants_are_refused(text: str) -> None:
    with pytest.raises(FormatError) as info:
        strictjson.b64decode_strict(text, what="sig")
    assert info.value.check == "base64"


def test_base64_of_non_string_is_refused() -> None:
    with pytest.raises(FormatError):
        strictjson.b64decode_strict(b"aGk=", what="sig")


# --- properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_format_error(data: bytes) -> None:
    try:
        strictjson.loads(data, what="fuzz")
    except FormatError:
        pass


_json_text = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**25), 10**25) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
).map(lambda obj: json.dumps(obj).encode())


@settings(max_examples=200, deadline=None)
@given(_json_text, st.integers(0, 300), st.binary(min_size=1, max_size=3))
def test_mutated_json_raises_only_format_error(data: bytes, where: int, junk: bytes) -> None:
    where %= len(data) + 1
    for candidate in (data, data[:where] + junk + data[where:], data[:where]):
        try:
            strictjson.loads(candidate, what="fuzz")
        except FormatError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(10**19), 10**19) | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_canonical_round_trip_preserves_valid_documents(obj: object) -> None:
    assert strictjson.loads(strictjson.dumps_canonical(obj), what="x") == obj
