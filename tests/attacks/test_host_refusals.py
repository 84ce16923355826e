"""Issue 14, "refusals that say exactly why": the refusal names the check,
the key ids and the URL actually fetched; slow-drip servers are cut off by a
minimum-throughput rule and a total cap per import (THREATS T9, M1, M2)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import DeadlineError, ThresholdError
from secure_import.publish.serve import Response
from secure_import.transport.https import Fetcher

from .conftest import Scenario, import_victim
from .crafting import serve_manifest
from .test_manifest_attacks import second_key

# --- threshold refusals tell tampering from a wrong key --------------------------------


def test_m1_edited_manifest_payload_is_reported_as_tampering_with_key_ids(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    env = json.loads(scenario.publisher.manifest_bytes())
    payload = base64.b64decode(env["payload"]).replace(b'"version":1', b'"version":2')
    env["payload"] = base64.b64encode(payload).decode()
    serve_manifest(scenario.publisher, json.dumps(env).encode())
    repo = scenario.consumer.add()
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met")
    assert exc.check == "signature-invalid"
    pinned = repo.pinned_root.keys[0].key_id
    assert f"pinned [{pinned[:16]}]" in str(exc)
    record = scenario.consumer.refusals()[-1]
    assert "check: signature-invalid" in record["message"]
    assert record["url"] == repo.manifest_url


def test_m3_wrong_pinned_key_is_reported_as_no_pinned_signer_with_key_ids(
    scenario: Scenario,
) -> None:
    """The same import with the wrong key pinned: a different check, naming
    the key that signed and the key pinned (a wrong key, or a rotation)."""
    scenario.publish_baseline()
    _, other_pub = second_key(scenario.tmp, "other")
    repo = scenario.consumer.add(keys=[other_pub])
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met")
    assert exc.check == "no-pinned-signer"
    signer = json.loads(scenario.publisher.manifest_bytes())["signatures"][0]["keyid"]
    assert f"signed by key ids [{signer[:16]}]" in str(exc)
    assert f"pinned [{repo.pinned_root.keys[0].key_id[:16]}]" in str(exc)
    assert "rotated" in str(exc)


# --- T9: slow drip -----------------------------------------------------------------------


def test_t9_drip_is_cut_by_the_minimum_throughput_well_before_the_deadline(
    scenario: Scenario,
) -> None:
    """A few bytes a second: cut once a throughput window passes below the
    minimum, long before the 60 s download deadline (window scaled to 1 s)."""
    scenario.publish_baseline()
    body = scenario.publisher.manifest_bytes()
    scenario.publisher.respond(MANIFEST_NAME, Response(body=body, drip_interval=0.2))
    scenario.consumer.add(limits=Limits(throughput_window=1.0, min_throughput=1024))
    started = time.monotonic()
    exc = scenario.refused(import_victim, DeadlineError, "deadline-exceeded")
    elapsed = time.monotonic() - started
    assert exc.check == "throughput"
    assert exc.url is not None and exc.url.endswith(MANIFEST_NAME)
    assert elapsed < 5.0  # the 60 s download deadline was never reached


def test_t9_a_silent_server_is_cut_after_one_throughput_window(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.publisher.respond(
        MANIFEST_NAME, Response(body=scenario.publisher.manifest_bytes(), delay=8.0)
    )
    scenario.consumer.add(limits=Limits(throughput_window=1.0, read_timeout=20.0))
    started = time.monotonic()
    exc = scenario.refused(import_victim, DeadlineError, "deadline-exceeded")
    assert exc.check == "throughput"
    assert time.monotonic() - started < 5.0


def test_t9_defaults_cut_a_drip_well_before_30_seconds() -> None:
    """The documented defaults: a drip below 1 KiB/s over 10 s is cut at the
    first window (~10 s), and no import takes more than 120 s in all."""
    limits = Limits()
    assert limits.throughput_window * 2 < 30
    assert limits.min_throughput == 1024
    assert limits.read_timeout >= limits.throughput_window  # a read waits at most one window
    assert limits.import_deadline == 120.0


def test_t9_an_honest_slow_link_is_not_cut(scenario: Scenario) -> None:
    """About 1 KB/s (the test server's per-byte drip), steadily above a
    minimum of 200 B/s: the body arrives whole, although it takes several
    throughput windows (the rule judges throughput, not total time)."""
    scenario.publish_baseline()
    body = b"x" * 1200
    scenario.publisher.respond("big.bin", Response(body=body, drip_interval=0.0004))
    limits = Limits(throughput_window=0.3, min_throughput=200)
    fetcher = Fetcher(
        scenario.publisher.url, limits=limits, ca_bundle=scenario.publisher.rig.ca_pem_path
    )
    try:
        started = time.monotonic()
        response = fetcher.get(scenario.publisher.url + "big.bin", cap=len(body))
        assert response.body == body
        assert time.monotonic() - started > limits.throughput_window  # several windows
    finally:
        fetcher.close()


def test_t9_the_import_deadline_caps_downloads_that_keep_the_throughput(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    body = b"x" * 20_000
    scenario.publisher.respond("big.bin", Response(body=body, drip_interval=0.0004))
    limits = Limits(throughput_window=0.5, min_throughput=512)
    fetcher = Fetcher(
        scenario.publisher.url, limits=limits, ca_bundle=scenario.publisher.rig.ca_pem_path
    )
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineError) as info:
            fetcher.get(scenario.publisher.url + "big.bin", cap=len(body), deadline=started + 1.0)
        assert info.value.check == "import-deadline"
        assert time.monotonic() - started < 3.0
    finally:
        fetcher.close()


def test_t9_a_cancelled_download_stops_at_its_next_read(scenario: Scenario) -> None:
    import threading

    scenario.publish_baseline()
    body = b"x" * 20_000
    scenario.publisher.respond("big.bin", Response(body=body, drip_interval=0.0004))
    fetcher = Fetcher(
        scenario.publisher.url, limits=Limits(), ca_bundle=scenario.publisher.rig.ca_pem_path
    )
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineError) as info:
            fetcher.get(scenario.publisher.url + "big.bin", cap=len(body), cancel=cancel)
        assert info.value.check == "cancelled"
        assert time.monotonic() - started < 3.0
    finally:
        timer.cancel()
        fetcher.close()


def test_f1_tampered_bundle_error_names_the_url_actually_fetched(scenario: Scenario) -> None:
    """A cold package arrives as one signed bundle: the refusal names the
    bundle's URL (the one requested), not a file URL that was never
    requested, and comes before decompression (the compressed bytes fail
    their signed sha256)."""
    from secure_import.errors import HashMismatchError

    for name in ("a", "b", "c"):
        scenario.publisher.write(f"victim/{name}.py", f"{name.upper()} = 1\n")
    scenario.publish_baseline()
    part = (scenario.publisher.out / "victim/part.py").read_bytes()
    scenario.publisher.tamper("victim/part.py", scenario.evil()[: len(part)].ljust(len(part), b"#"))
    scenario.warm()  # the manifest accepted and cached; the package still cold
    exc = scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    assert exc.url is not None and exc.url.endswith(".zlib")
    requested = [scenario.publisher.url.rstrip("/") + p for p in scenario.publisher.request_paths()]
    assert exc.url in requested
    bundle = scenario.publisher.signed_manifest().bundle_of("victim/part.py")
    assert bundle is not None and str(exc.expected) == bundle.sha256
    assert not any(p.endswith("victim/part.py") for p in scenario.publisher.request_paths())
