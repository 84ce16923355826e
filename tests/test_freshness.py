"""Freshness never rests on a server's validators or on a stored one (THREATS H5, H6).

The client asks the publisher's manifest pointer, unconditionally, whether the
cached envelope is current (secure_import.freshness); no ETag is stored or
sent.  These tests run against the simulator; tests/test_nginx.py repeats the
decisive ones against a real nginx.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import FormatError, RequestBuildError, TransportError
from secure_import.publish.serve import Response
from secure_import.transport.https import Fetcher
from secure_import.verify.pointer import POINTER_NAME, Pointer, make_pointer, parse_pointer

from .conftest import Consumer, Publisher


def _publish(publisher: Publisher, value: str) -> None:
    publisher.write("freshpkg/__init__.py", f"VALUE = {value!r}\n")
    publisher.publish()


def _value(consumer: Consumer) -> str:
    consumer.new_process()
    return str(importlib.import_module("freshpkg").VALUE)


def _manifests(consumer: Consumer) -> list[dict[str, object]]:
    return [r for r in consumer.audit() if r["event"] == "manifest"]


def test_h5_server_etag_planted_next_to_an_old_cached_manifest_does_not_freeze_the_client(
    publisher: Publisher, consumer: Consumer
) -> None:
    """The attack of issue 14: the server's *current* ETag written beside an old
    cached manifest made every later run get a 304 and stay on the old copy."""
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    _publish(publisher, "two")
    current = '"' + hashlib.sha256(publisher.manifest_bytes()).hexdigest() + '"'  # our server's
    repo_dir = next((consumer.paths.cache_dir / "metadata").iterdir())
    (repo_dir / (MANIFEST_NAME + ".etag")).write_text(current)
    publisher.server.clear_requests()

    assert _value(consumer) == "two"
    assert all("if-none-match" not in r.headers for r in publisher.server.requests)
    assert [r["manifest_version"] for r in _manifests(consumer)][-1] == 2
    assert _manifests(consumer)[-1]["outcome"] == "ok"


def test_h5_malformed_stored_validator_is_ignored_not_taken_for_offline(
    publisher: Publisher, consumer: Consumer
) -> None:
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    repo_dir = next((consumer.paths.cache_dir / "metadata").iterdir())
    (repo_dir / (MANIFEST_NAME + ".etag")).write_bytes(b'"bad\r\nInjected: 1"\xff')
    _publish(publisher, "two")

    assert _value(consumer) == "two"
    assert _manifests(consumer)[-1]["outcome"] == "ok"  # not "offline"


@pytest.mark.parametrize("etag", ['"a\r\nX-Injected: 1"', '"caf\u00e9"', '"nul\x00"'])
def test_h5_a_request_that_cannot_be_built_is_its_own_error_not_a_transport_failure(
    publisher: Publisher, etag: str
) -> None:
    _publish(publisher, "one")
    fetcher = Fetcher(publisher.url, limits=Limits(), ca_bundle=publisher.rig.ca_pem_path)
    try:
        with pytest.raises(RequestBuildError) as caught:
            fetcher.get(publisher.url + MANIFEST_NAME, cap=10_000, etag=etag, what="manifest")
    finally:
        fetcher.close()
    assert not isinstance(caught.value, TransportError)  # so no offline fallback applies
    assert caught.value.code == "request-invalid"
    assert publisher.server.requests == []  # refused before anything was sent


def test_h5_a_request_that_cannot_be_built_fails_the_import_instead_of_going_offline(
    publisher: Publisher, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(publisher, "one")
    assert _value(consumer) == "one"

    def unbuildable(fetcher: Fetcher, *args: object, **kwargs: object) -> object:
        return fetcher.get(publisher.url + POINTER_NAME, cap=100, etag="bad\nvalue")

    # The manifest update imports ask_manifest when it asks (not at start-up).
    monkeypatch.setattr("secure_import.transport.freshness.ask_manifest", unbuildable)
    consumer.new_process()
    with pytest.raises(RequestBuildError):
        importlib.import_module("freshpkg")
    assert all(r["outcome"] != "offline" for r in _manifests(consumer))
    assert consumer.refusals()[-1]["code"] == "request-invalid"


def test_h6_server_answering_304_to_everything_cannot_hold_back_a_new_release(
    publisher: Publisher, consumer: Consumer
) -> None:
    """A server whose validators always match (the worst mtime+size case)."""
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    _publish(publisher, "two")

    def always_304(request: object) -> Response | None:
        headers = getattr(request, "headers", {})
        return Response(status=304) if "if-none-match" in headers else None

    publisher.respond(MANIFEST_NAME, always_304)
    assert _value(consumer) == "two"


def test_warm_run_with_an_unchanged_release_asks_only_for_the_pointer(
    publisher: Publisher, consumer: Consumer
) -> None:
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    publisher.server.clear_requests()
    assert _value(consumer) == "one"
    assert publisher.request_paths() == ["/" + POINTER_NAME]


@pytest.mark.parametrize(
    "pointer",
    [
        b"not json",
        b'{"format": "secure-import-pointer/2", "sha256": "'
        + b"0" * 64
        + b'", "length": 1, "version": 1}',
        b"",
    ],
    ids=["garbage", "unknown-format", "empty"],
)
def test_unusable_pointer_means_the_manifest_is_fetched_in_full(
    publisher: Publisher, consumer: Consumer, pointer: bytes
) -> None:
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    _publish(publisher, "two")
    publisher.respond(POINTER_NAME, Response(body=pointer))
    publisher.server.clear_requests()
    assert _value(consumer) == "two"
    assert publisher.request_paths()[:2] == ["/" + POINTER_NAME, "/" + MANIFEST_NAME]


def test_pointer_naming_an_older_release_cannot_roll_the_client_back(
    publisher: Publisher, consumer: Consumer
) -> None:
    """The pointer is a hint: one naming release one (while the client holds
    two) only makes the client fetch the manifest, which is still release two."""
    _publish(publisher, "one")
    old = publisher.manifest_bytes()
    _publish(publisher, "two")
    assert _value(consumer) == "two"
    publisher.respond(POINTER_NAME, Response(body=make_pointer(old, 1)))
    assert _value(consumer) == "two"
    assert [r["manifest_version"] for r in _manifests(consumer)] == [2, 2]


def test_server_failing_on_the_pointer_falls_back_to_the_verified_cached_copy(
    publisher: Publisher, consumer: Consumer
) -> None:
    _publish(publisher, "one")
    assert _value(consumer) == "one"
    publisher.respond(POINTER_NAME, Response(status=503))
    assert _value(consumer) == "one"
    last = _manifests(consumer)[-1]
    assert last["outcome"] == "offline" and "503" in str(last["message"])


def test_publisher_writes_a_pointer_naming_the_new_manifest(
    publisher: Publisher, tmp_path: Path
) -> None:
    _publish(publisher, "one")
    pointer = parse_pointer((publisher.out / POINTER_NAME).read_bytes())
    assert pointer == Pointer(
        hashlib.sha256(publisher.manifest_bytes()).hexdigest(),
        len(publisher.manifest_bytes()),
        1,
    )
    assert pointer.names(publisher.manifest_bytes())


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'{"format": "secure-import-pointer/1", "sha256": "AB", "length": 1, "version": 1}',
        b'{"format": "secure-import-pointer/1", "sha256": "'
        + b"a" * 64
        + b'", "length": true, "version": 1}',
        b'{"format": "secure-import-pointer/1", "sha256": "'
        + b"a" * 64
        + b'", "length": 1, "version": 1, "extra": 1}',
        b'{"format": "secure-import-pointer/1", "format": "x", "sha256": "'
        + b"a" * 64
        + b'", "length": 1, "version": 1}',
    ],
)
def test_pointer_parser_is_strict(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_pointer(data)
