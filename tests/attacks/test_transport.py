"""THREATS.md T1-T10: the network path, the server or a mirror is hostile."""

from __future__ import annotations

import importlib
import time
from datetime import UTC, datetime, timedelta

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    ConnectionFailedError,
    DeadlineError,
    EncodingRefusedError,
    ExpiredError,
    HTTPStatusError,
    InsecureURLError,
    LengthMismatchError,
    RedirectRefusedError,
    TLSError,
    TooLargeError,
)
from secure_import.publish.serve import RepoServer, Response
from secure_import.verify.pointer import POINTER_NAME

from ..httpsrig import expired_context, self_signed_context, wrong_host_context
from .conftest import Scenario, import_victim


def test_t1_http_repository_is_refused_when_added_with_no_request(scenario: Scenario) -> None:
    scenario.publish_baseline()
    http_url = scenario.publisher.url.replace("https://", "http://")
    scenario.publisher.server.clear_requests()
    exc = scenario.refused(
        lambda: scenario.consumer.add(url=http_url), InsecureURLError, "insecure-url"
    )
    assert "https" in str(exc)
    assert scenario.publisher.request_paths() == []
    assert secure_import.repositories() == ()


def test_t2_redirect_to_http_is_refused_and_not_followed(scenario: Scenario) -> None:
    scenario.publish_baseline()
    target = scenario.publisher.url.replace("https://", "http://") + MANIFEST_NAME
    scenario.publisher.respond(MANIFEST_NAME, Response.redirect(target))
    scenario.consumer.add()
    exc = scenario.refused(import_victim, RedirectRefusedError, "redirect-refused")
    assert exc.name == "victim"
    assert scenario.publisher.request_paths() == ["/" + MANIFEST_NAME]


@pytest.mark.parametrize("where", ["other-port", "other-host-name"])
def test_t3_redirect_to_another_origin_is_refused(scenario: Scenario, where: str) -> None:
    scenario.publish_baseline()
    other = RepoServer(scenario.publisher.out, ssl_context=scenario.publisher.rig.server_context())
    with other:
        if where == "other-port":
            target = other.url + MANIFEST_NAME
        else:  # same server, but "localhost" is not the configured host
            target = scenario.publisher.url.replace("127.0.0.1", "localhost") + MANIFEST_NAME
        scenario.publisher.respond(MANIFEST_NAME, Response.redirect(target))
        scenario.consumer.add()
        scenario.refused(import_victim, RedirectRefusedError, "redirect-refused")
        assert other.requests == []


def test_t3_redirect_within_the_origin_is_followed(scenario: Scenario) -> None:
    scenario.publish_baseline()
    (scenario.publisher.out / "moved").mkdir()
    (scenario.publisher.out / "moved" / MANIFEST_NAME).write_bytes(
        scenario.publisher.manifest_bytes()
    )
    scenario.publisher.respond(
        MANIFEST_NAME, Response.redirect(scenario.publisher.url + "moved/" + MANIFEST_NAME)
    )
    scenario.consumer.add()
    assert import_victim().OK is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad_tls", ["self-signed", "expired", "wrong-host"])
def test_t4_bad_certificates_are_transport_errors(scenario: Scenario, bad_tls: str) -> None:
    scenario.publish_baseline()
    rig = scenario.publisher.rig
    context = {
        "self-signed": lambda: self_signed_context(),
        "expired": lambda: expired_context(rig),
        "wrong-host": lambda: wrong_host_context(rig),
    }[bad_tls]()
    with RepoServer(scenario.publisher.out, ssl_context=context) as bad:
        scenario.consumer.add(url=bad.url)
        exc = scenario.refused(import_victim, TLSError, "tls-error")
        assert "certificate" in str(exc).lower()


def test_t5_proxy_and_ca_environment_variables_are_not_trusted(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario.publish_baseline()
    # A proxy that would break every request if it were honoured...
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    scenario.consumer.add()
    assert import_victim().OK is True  # type: ignore[attr-defined]
    scenario.consumer.new_process(ca_bundle=None)
    # ...and a CA injected through the environment is not trusted either: without
    # ca_bundle= the default bundle applies, which does not know the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(scenario.publisher.rig.ca_pem_path))
    monkeypatch.setenv("SSL_CERT_DIR", str(scenario.publisher.rig.ca_pem_path.parent))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(scenario.publisher.rig.ca_pem_path))
    scenario.refused(lambda: importlib.import_module("good"), TLSError, "tls-error")


def test_t6_userinfo_url_is_refused(scenario: Scenario) -> None:
    port = scenario.publisher.server.port
    for url in (f"https://good.example@127.0.0.1:{port}/", f"https://127.0.0.1:{port}@evil/"):
        with pytest.raises(InsecureURLError):
            scenario.consumer.add(url=url)
    assert len(scenario.consumer.refusals()) == 2


def test_t6_origin_match_is_exact(scenario: Scenario) -> None:
    scenario.publish_baseline()
    port = scenario.publisher.server.port
    target = f"https://127.0.0.1.evil.example:{port}/{MANIFEST_NAME}"
    scenario.publisher.respond(MANIFEST_NAME, Response.redirect(target))
    scenario.consumer.add()
    scenario.refused(import_victim, RedirectRefusedError, "redirect-refused")


def test_t7_endless_manifest_stops_at_the_cap(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.publisher.respond(MANIFEST_NAME, Response(endless=True, body=b"A" * 4096))
    scenario.consumer.add(limits=Limits(manifest_max_bytes=64 * 1024))
    exc = scenario.refused(import_victim, TooLargeError, "too-large")
    assert "65536" in str(exc)


def test_t7_file_larger_than_signed_length_is_cut_off(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    signed = (scenario.publisher.out / "victim/part.py").read_bytes()
    scenario.publisher.tamper("victim/part.py", signed + scenario.evil())
    scenario.refused(import_victim, LengthMismatchError, "length-mismatch")


def test_t7_announced_oversize_body_is_refused_before_reading(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.publisher.respond(
        MANIFEST_NAME, Response(body=b"x", content_length=10**12, truncate_after=1)
    )
    scenario.consumer.add()
    scenario.refused(import_victim, TooLargeError, "too-large")


def test_t8_compressed_body_is_never_decoded(scenario: Scenario) -> None:
    import gzip

    scenario.publish_baseline()
    bomb = gzip.compress(b"\0" * 10_000_000)
    scenario.publisher.respond(
        MANIFEST_NAME, Response(body=bomb, headers={"Content-Encoding": "gzip"})
    )
    scenario.consumer.add()
    scenario.refused(import_victim, EncodingRefusedError, "encoding-refused")


def test_t9_slow_drip_hits_the_total_deadline(scenario: Scenario) -> None:
    scenario.publish_baseline()
    body = scenario.publisher.manifest_bytes()
    scenario.publisher.respond(MANIFEST_NAME, Response(body=body, drip_interval=0.05))
    scenario.consumer.add(limits=Limits(download_deadline=1.0, read_timeout=5.0))
    started = time.monotonic()
    scenario.refused(import_victim, DeadlineError, "deadline-exceeded")
    assert time.monotonic() - started < 4.0  # bounded by the deadline, not the body


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (Response(status=500), HTTPStatusError, "http-status"),
        (Response(status=404), HTTPStatusError, "http-status"),
        (Response(abort=True), ConnectionFailedError, "connection-failed"),
    ],
)
def test_t10_server_errors_are_clear_transport_errors(
    scenario: Scenario, response: Response, error: type, code: str
) -> None:
    scenario.publish_baseline()
    scenario.publisher.respond(MANIFEST_NAME, response)
    scenario.consumer.add()
    scenario.refused(import_victim, error, code)


def test_t10_truncated_file_is_a_transport_error(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    part = (scenario.publisher.out / "victim/part.py").read_bytes()
    scenario.publisher.respond("victim/part.py", Response(body=part, truncate_after=2))
    scenario.refused(import_victim, ConnectionFailedError, "connection-failed")


def test_t10_fresh_cached_manifest_is_used_when_the_server_fails(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    scenario.consumer.new_process()
    scenario.publisher.respond(MANIFEST_NAME, Response(status=503))
    scenario.publisher.respond(POINTER_NAME, Response(status=503))
    assert import_victim().OK is True  # type: ignore[attr-defined]
    last = [r for r in scenario.consumer.audit() if r["event"] == "manifest"][-1]
    assert last["outcome"] == "offline"
    assert "503" in last["message"]


def test_t10_expired_cached_manifest_is_not_used_when_the_server_fails(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    scenario.warm()
    later = datetime.now(UTC) + timedelta(days=365)
    scenario.consumer.new_process(clock=lambda: later)
    scenario.publisher.respond(MANIFEST_NAME, Response(status=503))
    scenario.publisher.respond(POINTER_NAME, Response(status=503))
    scenario.refused(import_victim, ExpiredError, "expired")
