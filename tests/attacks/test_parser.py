"""THREATS.md P1-P7 end to end: malformed metadata served by the repository.

The unit tests of strictjson/envelope/manifest cover each rule in depth
(tests/test_strictjson.py, test_envelope.py, test_manifest.py, with
hypothesis); here every row goes through the real import path once: the
malformed document is validly signed where that is possible, so only the
parser stands between it and the import.
"""

from __future__ import annotations

import base64
import json

import pytest

from secure_import.errors import FormatError

from .conftest import Scenario, import_victim
from .crafting import payload_of, serve_manifest, sign_raw


def _payload_text(scenario: Scenario) -> bytes:
    return json.dumps(payload_of(scenario.publisher), sort_keys=True).encode()


SIGNED_PAYLOADS = {
    "p1-truncated-json": lambda good: good[:-5],
    "p1-trailing-bytes": lambda good: good + b" {}",
    "p1-invalid-utf8": lambda good: good.replace(b'"good"', b'"go\xff\xfed"', 1),
    "p1-lone-surrogate": lambda good: good.replace(b'"good"', b'"\\ud800good"', 1),
    "p2-duplicate-keys": lambda good: good.replace(b'"version": 1', b'"version": 1, "version": 99'),
    "p3-huge-integer": lambda good: good.replace(b'"version": 1', b'"version": ' + b"9" * 5000),
    "p3-nan": lambda good: good.replace(b'"version": 1', b'"version": NaN'),
    "p3-infinity": lambda good: good.replace(b'"version": 1', b'"version": Infinity'),
    "p3-1e999": lambda good: good.replace(b'"version": 1', b'"version": 1e999'),
    "p4-deep-nesting": lambda good: good.replace(
        b'"version": 1', b'"version": ' + b"[" * 100_000 + b"]" * 100_000
    ),
    "p5-string-version": lambda good: good.replace(b'"version": 1', b'"version": "42"'),
    "p5-bool-version": lambda good: good.replace(b'"version": 1', b'"version": true'),
    "p7-unknown-field": lambda good: good.replace(b'"version": 1', b'"version": 1, "extra": 0'),
}


@pytest.mark.parametrize("case", sorted(SIGNED_PAYLOADS))
def test_p1_to_p5_p7_malformed_signed_payload_is_a_format_error(
    scenario: Scenario, case: str
) -> None:
    scenario.publish_baseline()
    good = _payload_text(scenario)
    bad = SIGNED_PAYLOADS[case](good)
    assert bad != good
    serve_manifest(scenario.publisher, sign_raw(bad, [scenario.publisher.private_key]))
    scenario.consumer.add()
    scenario.refused(import_victim, FormatError, "format-error")


def _envelope(scenario: Scenario) -> dict[str, object]:
    value: dict[str, object] = json.loads(scenario.publisher.manifest_bytes())
    return value


def _mutate_sig(scenario: Scenario, new_sig: str) -> bytes:
    env = _envelope(scenario)
    env["signatures"] = [{"keyid": "k", "sig": new_sig}]
    return json.dumps(env).encode()


ENVELOPES = {
    "p6-urlsafe-base64-payload": lambda s: json.dumps(
        {
            **_envelope(s),
            "payload": base64.urlsafe_b64encode(
                base64.b64decode(str(_envelope(s)["payload"])) + b"\xfb\xff"
            ).decode(),
        }
    ).encode(),
    "p6-unpadded-base64-payload": lambda s: json.dumps(
        {**_envelope(s), "payload": str(_envelope(s)["payload"]).rstrip("=") + "A"}
    ).encode(),
    "p6-signature-too-short": lambda s: _mutate_sig(s, base64.b64encode(b"\0" * 63).decode()),
    "p6-signature-too-long": lambda s: _mutate_sig(s, base64.b64encode(b"\0" * 65).decode()),
    "p6-signature-not-base64": lambda s: _mutate_sig(s, "!!!!"),
    "p1-envelope-not-json": lambda s: s.publisher.manifest_bytes()[:-1],
    "p7-envelope-unknown-field": lambda s: json.dumps({**_envelope(s), "x": 1}).encode(),
    "p2-envelope-duplicate-key": lambda s: s.publisher.manifest_bytes().replace(
        b'{"payload"', b'{"payload":"","payload"', 1
    ),
}


@pytest.mark.parametrize("case", sorted(ENVELOPES))
def test_p6_malformed_envelope_is_a_format_error(scenario: Scenario, case: str) -> None:
    scenario.publish_baseline()
    bad = ENVELOPES[case](scenario)
    assert bad != scenario.publisher.manifest_bytes()
    serve_manifest(scenario.publisher, bad)
    scenario.consumer.add()
    scenario.refused(import_victim, FormatError, "format-error")
