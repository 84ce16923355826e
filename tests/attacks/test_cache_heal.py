"""THREATS.md L1 for the cached manifest envelope (issue 14): a cached copy
that no longer verifies (truncated, emptied, a byte flipped, a payload
rewritten to list an attacker's file) is discarded, audited as
``cache-corrupt`` and the manifest fetched again in full, once, whatever the
server's pointer says; it never makes every later import fail until
``cache clear``, and an error names the URL actually fetched."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME
from secure_import.errors import ConnectionFailedError
from secure_import.publish.serve import Response
from secure_import.verify.pointer import POINTER_NAME, make_pointer, parse_pointer

from .conftest import Scenario, import_victim


def truncated(envelope: bytes, scenario: Scenario) -> bytes:
    return envelope[: len(envelope) // 2]


def emptied(envelope: bytes, scenario: Scenario) -> bytes:
    return b""


def flipped_byte(envelope: bytes, scenario: Scenario) -> bytes:
    """One character of the base64 payload changed (still valid base64 and,
    decoded, still a well-formed object: only the signature can tell)."""
    doc = json.loads(envelope)
    payload = doc["payload"]
    at = len(payload) // 2
    doc["payload"] = payload[:at] + ("B" if payload[at] != "B" else "C") + payload[at + 1 :]
    out = json.dumps(doc).encode()
    assert len(out) == len(json.dumps(json.loads(envelope)).encode())
    return out


def rewritten_to_evil(envelope: bytes, scenario: Scenario) -> bytes:
    """The payload rewritten to list the attacker's bytes for victim/part.py,
    which are planted in the cache under their own (valid) digest: trusted,
    this copy would run them."""
    evil = scenario.evil()
    sha = hashlib.sha256(evil).hexdigest()
    objects = scenario.consumer.paths.cache_dir / "objects" / sha[:2]
    objects.mkdir(parents=True, exist_ok=True, mode=0o700)
    (objects / sha).write_bytes(evil)
    doc = json.loads(envelope)
    payload = json.loads(base64.b64decode(doc["payload"]))
    entry = payload["files"]["victim/part.py"]
    entry["sha256"], entry["length"] = sha, len(evil)
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(doc).encode()


DAMAGE: dict[str, Callable[[bytes, Scenario], bytes]] = {
    "truncated": truncated,
    "emptied": emptied,
    "flipped-byte": flipped_byte,
    "rewritten-to-evil": rewritten_to_evil,
}


def damage_cached_envelope(
    scenario: Scenario, repo: secure_import.Repository, how: str
) -> tuple[Path, bytes]:
    """Damage the cached envelope ``how``; return its path and the bad bytes."""
    path = scenario.consumer.paths.cache_dir / "metadata" / repo.id / MANIFEST_NAME
    good = path.read_bytes()
    assert good == scenario.publisher.manifest_bytes()
    bad = DAMAGE[how](good, scenario)
    assert bad != good
    path.write_bytes(bad)
    return path, bad


def warm_manifest_only(scenario: Scenario) -> secure_import.Repository:
    """A run that accepted and cached the manifest (importing ``good``), with
    ``victim`` still cold: the next run needs the manifest to find it."""
    scenario.publish_baseline()
    return scenario.warm()


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_l1_damaged_cached_manifest_is_discarded_and_fetched_again_in_full(
    scenario: Scenario, how: str
) -> None:
    """The pointer says "unchanged" (it names the envelope this client
    accepted and cached): the damaged copy is still never used, the manifest
    is fetched once in full, and the cache holds the good envelope again."""
    repo = warm_manifest_only(scenario)
    path, bad = damage_cached_envelope(scenario, repo, how)
    pointer = parse_pointer((scenario.publisher.out / POINTER_NAME).read_bytes())
    assert pointer.names(scenario.publisher.manifest_bytes())  # "unchanged"
    scenario.publisher.server.clear_requests()
    records_before = len(scenario.consumer.audit())

    scenario.consumer.new_process()
    victim = import_victim()

    assert victim.part.X == 1  # type: ignore[attr-defined]
    assert not scenario.canary.exists(), "bytes listed by the damaged copy ran"
    assert path.read_bytes() == scenario.publisher.manifest_bytes()  # the good envelope
    manifest_requests = [p for p in scenario.publisher.request_paths() if p == "/" + MANIFEST_NAME]
    assert len(manifest_requests) == 1  # in full, once
    new = scenario.consumer.audit()[records_before:]
    corrupt = [r for r in new if r["event"] == "cache-corrupt"]
    assert len(corrupt) == 1
    assert corrupt[0]["outcome"] == "discarded"
    assert corrupt[0]["code"] == "cache-corrupt"
    assert corrupt[0]["url"] == scenario.publisher.url + MANIFEST_NAME
    assert corrupt[0]["sha256"] == hashlib.sha256(bad).hexdigest()
    assert [r["outcome"] for r in new if r["event"] == "manifest"] == ["ok"]
    assert not [r for r in new if r["event"] == "refuse"]
    scenario.consumer.assert_cache_verified()  # (the planted object is validly named)


def test_l1_damaged_cached_manifest_is_fetched_in_full_even_if_the_pointer_names_it(
    scenario: Scenario,
) -> None:
    """A server whose pointer vouches for the very bytes now in the cache
    (an answer that would mean 304 for them) does not keep the damaged copy
    in force: it is discarded before the answer is used, and the manifest
    fetched in full."""
    repo = warm_manifest_only(scenario)
    path, bad = damage_cached_envelope(scenario, repo, "flipped-byte")
    scenario.publisher.respond(POINTER_NAME, Response(body=make_pointer(bad, 1)))
    scenario.publisher.server.clear_requests()

    scenario.consumer.new_process()
    assert import_victim().part.X == 1  # type: ignore[attr-defined]

    assert path.read_bytes() == scenario.publisher.manifest_bytes()
    paths = scenario.publisher.request_paths()
    assert paths.count("/" + MANIFEST_NAME) == 1
    assert [r["event"] for r in scenario.consumer.audit()].count("cache-corrupt") == 1


def test_l1_damaged_cached_manifest_with_the_server_down_names_the_url_fetched(
    scenario: Scenario,
) -> None:
    """The server cannot be reached: the damaged copy is discarded (audited)
    rather than verified and blamed on the server, and the error is the
    transport failure, naming the URL actually requested (the pointer)."""
    repo = warm_manifest_only(scenario)
    path, _ = damage_cached_envelope(scenario, repo, "truncated")
    scenario.publisher.respond(POINTER_NAME, Response(abort=True))
    scenario.publisher.respond(MANIFEST_NAME, Response(abort=True))
    scenario.consumer.new_process()
    before = {p: d for p, d in scenario.consumer.snapshot().items() if p != str(path)}

    exc = scenario.refused(import_victim, ConnectionFailedError, "connection-failed", before=before)

    assert exc.url == scenario.publisher.url + POINTER_NAME
    assert not path.exists()  # discarded: the next run fetches in full
    assert [r["event"] for r in scenario.consumer.audit()].count("cache-corrupt") == 1
    # The next run, with the server back, heals without a cache clear.
    scenario.publisher.scripted.clear()
    scenario.consumer.new_process()
    assert import_victim().part.X == 1  # type: ignore[attr-defined]
    assert path.read_bytes() == scenario.publisher.manifest_bytes()


def test_l1_expired_cached_manifest_is_not_damage_and_is_not_discarded_offline(
    scenario: Scenario,
) -> None:
    """Only a copy that no longer *verifies* is damage: a verdict about
    authentic bytes (here: the planted copy is an older signed release, a
    rollback) stands as the attack it is (THREATS L2) and the copy is kept."""
    scenario.publish_baseline()
    old = scenario.publisher.manifest_bytes()
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    repo = scenario.warm()  # accepted version 2
    path = scenario.consumer.paths.cache_dir / "metadata" / repo.id / MANIFEST_NAME
    path.write_bytes(old)
    scenario.consumer.new_process(offline=True)
    with pytest.raises(secure_import.errors.RollbackError):
        importlib.import_module("victim")
    assert path.read_bytes() == old
    assert "cache-corrupt" not in [r["event"] for r in scenario.consumer.audit()]
