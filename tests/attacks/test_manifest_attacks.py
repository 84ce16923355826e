"""THREATS.md M1-M13: forged, replayed, frozen and mixed signed metadata."""

from __future__ import annotations

import base64
import importlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_import.errors import (
    EquivocationError,
    ExpiredError,
    FastForwardError,
    FormatError,
    HashMismatchError,
    RollbackError,
    SignatureError,
    ThresholdError,
)
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.verify import envelope
from secure_import.verify.strictjson import dumps_canonical

from .conftest import Scenario, import_victim
from .crafting import payload_of, resign, serve_manifest, sign_raw


def second_key(tmp: Path, name: str = "second") -> tuple[object, Path]:
    key, pub = generate_keypair(name, tmp / f"{name}-keys")
    return load_private_key_file(key), pub


def test_m1_one_byte_of_the_manifest_changed_is_a_signature_error(scenario: Scenario) -> None:
    scenario.publish_baseline()
    env = json.loads(scenario.publisher.manifest_bytes())
    payload = bytearray(base64.b64decode(env["payload"]))
    index = payload.index(b'"version":1') + len('"version":')
    payload[index] = ord("2")  # version 1 -> 2, signature kept
    env["payload"] = base64.b64encode(bytes(payload)).decode()
    serve_manifest(scenario.publisher, json.dumps(env).encode())
    scenario.consumer.add()
    scenario.refused(import_victim, ThresholdError, "threshold-not-met")


def test_m2_unpinned_key_claiming_a_pinned_key_id_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    attacker, _ = second_key(scenario.tmp, "attacker")
    forged = json.loads(sign_raw(json.dumps(payload_of(scenario.publisher)).encode(), [attacker]))  # type: ignore[list-item]
    pinned = json.loads(scenario.publisher.manifest_bytes())["signatures"][0]["keyid"]
    forged["signatures"][0]["keyid"] = pinned
    serve_manifest(scenario.publisher, json.dumps(forged).encode())
    scenario.consumer.add()
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met")
    assert "pinned" in str(exc)


def test_m3_other_publishers_valid_signature_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()  # signed by the publisher (A)
    _, other_pub = second_key(scenario.tmp, "publisher-b")
    scenario.consumer.add(keys=[other_pub])  # the user configured publisher B here
    scenario.refused(import_victim, ThresholdError, "threshold-not-met")


def test_m4_fewer_signatures_than_the_threshold_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    _, pub2 = second_key(scenario.tmp)
    scenario.consumer.add(keys=[scenario.publisher.pub_path, pub2], threshold=2)
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met")
    assert exc.expected == 2 and exc.got == 1


def test_m5_the_same_signature_twice_counts_once(scenario: Scenario) -> None:
    scenario.publish_baseline()
    _, pub2 = second_key(scenario.tmp)
    env = json.loads(scenario.publisher.manifest_bytes())
    sig = env["signatures"][0]
    env["signatures"] = [sig, dict(sig), {"keyid": "another-id-same-key", "sig": sig["sig"]}]
    serve_manifest(scenario.publisher, json.dumps(env).encode())
    scenario.consumer.add(keys=[scenario.publisher.pub_path, pub2], threshold=2)
    scenario.refused(import_victim, ThresholdError, "threshold-not-met")


def test_m6_threshold_met_plus_a_garbage_signature_is_accepted(scenario: Scenario) -> None:
    key2, pub2 = second_key(scenario.tmp)
    scenario.publish_baseline(private_keys=[scenario.publisher.private_key, key2])
    env = json.loads(scenario.publisher.manifest_bytes())
    env["signatures"].append({"keyid": "garbage", "sig": base64.b64encode(b"\1" * 64).decode()})
    serve_manifest(scenario.publisher, json.dumps(env).encode())
    scenario.consumer.add(keys=[scenario.publisher.pub_path, pub2], threshold=2)
    assert import_victim().OK is True  # type: ignore[attr-defined]


def test_m7_signature_for_another_payload_type_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    payload = base64.b64decode(json.loads(scenario.publisher.manifest_bytes())["payload"])
    # The same key signs the same bytes, but as a root document...
    other = json.loads(
        sign_raw(payload, [scenario.publisher.private_key], payload_type=envelope.ROOT_PAYLOAD_TYPE)
    )
    # ...and the attacker relabels the envelope as a manifest.
    other["payloadType"] = envelope.MANIFEST_PAYLOAD_TYPE
    serve_manifest(scenario.publisher, json.dumps(other).encode())
    scenario.consumer.add()
    scenario.refused(import_victim, ThresholdError, "threshold-not-met")


def test_m7_envelope_of_another_payload_type_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    payload = base64.b64decode(json.loads(scenario.publisher.manifest_bytes())["payload"])
    serve_manifest(
        scenario.publisher,
        sign_raw(
            payload, [scenario.publisher.private_key], payload_type=envelope.ROOT_PAYLOAD_TYPE
        ),
    )
    scenario.consumer.add()
    scenario.refused(import_victim, SignatureError, "bad-signature")


def test_m8_rollback_to_an_older_manifest_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()  # version 2
    scenario.warm()
    high_water = scenario.consumer.snapshot()
    scenario.publisher.serve_snapshot(1)
    scenario.consumer.new_process()
    exc = scenario.refused(import_victim, RollbackError, "rollback", before=high_water)
    assert exc.got == 1


def test_m9_equivocation_same_version_other_content_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    payload = payload_of(scenario.publisher)
    payload["expires"] = "2099-01-01T00:00:00Z"  # same version 1, different signed bytes
    resign(scenario.publisher, payload, [scenario.publisher.private_key])
    scenario.consumer.new_process()
    exc = scenario.refused(import_victim, EquivocationError, "equivocation")
    assert "sha256" in str(exc)


def test_m10_expired_manifest_is_refused(scenario: Scenario) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    scenario.publish_baseline(now=long_ago, expires_in=timedelta(days=1))
    scenario.consumer.add()
    exc = scenario.refused(import_victim, ExpiredError, "expired")
    assert "now =" in str(exc)


def test_m11_clock_set_back_does_not_reopen_rollback(scenario: Scenario) -> None:
    scenario.publish_baseline(expires_in=timedelta(days=2))
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    scenario.warm()
    before = scenario.consumer.snapshot()
    scenario.publisher.serve_snapshot(1)
    past = datetime.now(UTC) - timedelta(days=1)  # when version 1 was the newest
    scenario.consumer.new_process(clock=lambda: past)
    scenario.refused(import_victim, RollbackError, "rollback", before=before)


def test_m12_fast_forward_to_an_absurd_version_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    payload = payload_of(scenario.publisher)
    payload["version"] = 10**9
    resign(scenario.publisher, payload, [scenario.publisher.private_key])
    scenario.consumer.new_process()
    scenario.refused(import_victim, FastForwardError, "fast-forward")


def test_m12_version_2_to_the_62_is_refused_by_the_parser(scenario: Scenario) -> None:
    scenario.publish_baseline()
    payload = payload_of(scenario.publisher)
    payload["version"] = 2**62
    serve_manifest(
        scenario.publisher, sign_raw(dumps_canonical(payload), [scenario.publisher.private_key])
    )
    scenario.consumer.add()
    scenario.refused(import_victim, FormatError, "format-error")


def test_m13_file_from_version_1_with_manifest_2_is_a_hash_mismatch(scenario: Scenario) -> None:
    scenario.publish_baseline()
    old_part = (scenario.publisher.out / "victim/part.py").read_bytes()
    scenario.publisher.write("victim/part.py", "X = 9\n")  # same length, new content
    scenario.publisher.publish()
    scenario.publisher.tamper("victim/part.py", old_part)
    scenario.consumer.add()
    importlib.import_module("good")
    exc = scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    assert exc.expected != exc.got


@pytest.mark.parametrize("threshold", [1, 2])
def test_threshold_signatures_from_distinct_keys_are_accepted(
    scenario: Scenario, threshold: int
) -> None:
    key2, pub2 = second_key(scenario.tmp)
    scenario.publish_baseline(private_keys=[scenario.publisher.private_key, key2])
    scenario.consumer.add(keys=[scenario.publisher.pub_path, pub2], threshold=threshold)
    assert import_victim().OK is True  # type: ignore[attr-defined]
