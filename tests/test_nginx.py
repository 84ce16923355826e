"""The client against a real web server: nginx on 127.0.0.1 (Debian nginx-light).

Our own test server computes strong ETags and speaks HTTP/1.1 only; nginx, like
most production servers and CDNs, derives ETags from modification time and size
and offers HTTP/2.  These tests run the main import path, the freshness check
and the per-file fallback against it, and prove that a manifest replaced by one
of the same size within the same second (same nginx ETag) is still picked up
(THREATS H6).
"""

from __future__ import annotations

import importlib
import os
import socket
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from secure_import.config import BUNDLE_DIR, MANIFEST_NAME
from secure_import.errors import HashMismatchError, LengthMismatchError
from secure_import.verify.pointer import POINTER_NAME

from .conftest import Consumer, Publisher, canary_code
from .nginxrig import NginxServer

VALUE_ONE = 'VALUE = "release one"\n'
VALUE_TWO = 'VALUE = "release two"\n'  # the same length: a same-size manifest


def _publish(publisher: Publisher, value: str = VALUE_ONE) -> None:
    publisher.write("nginxpkg/__init__.py", "from .core import VALUE\n")
    publisher.write("nginxpkg/core.py", value)
    publisher.write("nginxpkg/extra.py", "EXTRA = 1\n")
    publisher.publish()


def _import_value(consumer: Consumer, nginx: NginxServer) -> str:
    consumer.new_process(url=nginx.url)
    return str(importlib.import_module("nginxpkg").VALUE)


def test_import_through_nginx_cold_then_one_small_freshness_request(
    publisher: Publisher, consumer: Consumer, nginx: NginxServer
) -> None:
    _publish(publisher)
    repo = consumer.add(url=nginx.url)
    module = importlib.import_module("nginxpkg")
    assert module.VALUE == "release one"
    assert module.__file__ == nginx.url + "nginxpkg/__init__.py"
    cold = nginx.requests()
    assert cold[0].path == "/" + MANIFEST_NAME
    assert cold[1].path.startswith(f"/{BUNDLE_DIR}/nginxpkg.")
    assert [r.status for r in cold] == [200, 200] and len(cold) == 2
    assert {r.protocol for r in cold} == {"HTTP/1.1"}  # httpx without the h2 extra
    consumer.assert_cache_verified()
    loads = [r for r in consumer.audit() if r["event"] == "load"]
    assert [r["module"] for r in loads] == ["nginxpkg", "nginxpkg.core"]
    assert all(r["repo"] == repo.url for r in loads)

    nginx.clear_log()
    assert _import_value(consumer, nginx) == "release one"
    warm = nginx.requests()
    assert [(r.path, r.status) for r in warm] == [("/" + POINTER_NAME, 200)]
    assert warm[0].bytes < 200  # a pointer, not the manifest


def test_h6_same_size_manifest_replaced_within_the_same_second_is_picked_up(
    publisher: Publisher, consumer: Consumer, nginx: NginxServer
) -> None:
    """THREATS H6: nginx's ETag is mtime-size; a same-size replacement in the
    same second keeps it, so a client trusting ETags would stay on release one."""
    _publish(publisher)
    manifest = publisher.out / MANIFEST_NAME
    old_stat = manifest.stat()
    client = httpx.Client(verify=nginx.client_context())
    old_etag = client.get(nginx.url + MANIFEST_NAME).headers["etag"]
    assert _import_value(consumer, nginx) == "release one"

    _publish(publisher, VALUE_TWO)
    os.utime(manifest, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))  # the same second
    assert manifest.stat().st_size == old_stat.st_size
    # The server really does lie: same ETag, and a 304 for the old copy.
    assert client.get(nginx.url + MANIFEST_NAME).headers["etag"] == old_etag
    conditional = client.get(nginx.url + MANIFEST_NAME, headers={"If-None-Match": old_etag})
    assert conditional.status_code == 304
    client.close()
    nginx.clear_log()

    assert _import_value(consumer, nginx) == "release two"
    assert [r.path for r in nginx.requests()][:2] == ["/" + POINTER_NAME, "/" + MANIFEST_NAME]
    manifests = [r for r in consumer.audit() if r["event"] == "manifest"]
    assert [r["manifest_version"] for r in manifests] == [1, 2]
    assert manifests[-1]["outcome"] == "ok"


def test_h6_site_without_a_pointer_fetches_the_manifest_in_full_every_time(
    publisher: Publisher, consumer: Consumer, nginx: NginxServer
) -> None:
    """A site signed by an older publisher (no pointer) is never trusted to
    compute validators either: the manifest is fetched in full, never a 304."""
    _publish(publisher)
    (publisher.out / POINTER_NAME).unlink()
    assert _import_value(consumer, nginx) == "release one"
    manifest = publisher.out / MANIFEST_NAME
    old_stat = manifest.stat()
    _publish(publisher, VALUE_TWO)
    (publisher.out / POINTER_NAME).unlink()
    os.utime(manifest, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    nginx.clear_log()

    assert _import_value(consumer, nginx) == "release two"
    statuses = [(r.path, r.status) for r in nginx.requests()][:2]
    assert statuses == [("/" + POINTER_NAME, 404), ("/" + MANIFEST_NAME, 200)]


def test_without_bundles_nginx_404s_fall_back_to_files(
    publisher: Publisher, consumer: Consumer, nginx: NginxServer
) -> None:
    _publish(publisher)
    for bundle in (publisher.out / BUNDLE_DIR).iterdir():
        bundle.unlink()
    consumer.add(url=nginx.url)
    assert importlib.import_module("nginxpkg").VALUE == "release one"
    statuses = {r.path: r.status for r in nginx.requests()}
    assert [s for p, s in statuses.items() if p.startswith(f"/{BUNDLE_DIR}/")] == [404]
    assert statuses["/nginxpkg/core.py"] == 200 and statuses["/nginxpkg/extra.py"] == 200
    consumer.assert_cache_verified()


def test_tampered_file_served_by_nginx_is_refused_and_nothing_runs(
    publisher: Publisher, consumer: Consumer, nginx: NginxServer, canary: Path
) -> None:
    _publish(publisher)
    evil = canary_code(canary).encode()
    publisher.tamper("nginxpkg/extra.py", evil)
    consumer.add(url=nginx.url)
    with pytest.raises((HashMismatchError, LengthMismatchError)) as caught:
        importlib.import_module("nginxpkg")
    assert caught.value.url is not None and caught.value.url.startswith(nginx.url)
    assert not canary.exists() and "nginxpkg" not in sys.modules
    consumer.assert_cache_verified(absent=evil)
    assert consumer.refusals()[-1]["code"] == caught.value.code


def test_nginx_offers_http2_to_clients_that_ask(nginx: NginxServer) -> None:
    """The rig is a real HTTP/2 server (for the benchmark's h2 rows)."""
    context = nginx.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", nginx.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert isinstance(context, ssl.SSLContext)
