"""Mirror failover against a real web server: nginx (Debian nginx-light) on 127.0.0.1.

Both directions, as a fleet meets them: nginx as the mirror behind our
simulator acting as a failing origin (a CDN in front of a dead origin), and
nginx as an origin that does not have the files (404s, its own error pages)
with our simulator as the mirror.  Each runs the main import path, and the
first also the freshness check (one pointer request, answered by nginx) and
a new release picked up through the mirror.  THREATS H11: a stale nginx
mirror is refused as rollback and audited with its host.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from secure_import.config import BUNDLE_DIR, MANIFEST_NAME
from secure_import.errors import RollbackError
from secure_import.publish.serve import RepoServer, Response
from secure_import.transport.mirrors import served_host
from secure_import.verify.pointer import POINTER_NAME

from .conftest import Consumer, Publisher, canary_code
from .httpsrig import TLSServerFactory
from .nginxrig import NginxServer, nginx_available


@pytest.fixture
def need_nginx() -> None:
    if not nginx_available():
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")


@pytest.fixture
def nginx_at(
    tmp_path: Path, rig: TLSServerFactory, need_nginx: None
) -> Iterator[dict[str, NginxServer]]:
    """The nginx servers a test started with :func:`start_nginx`, stopped after it."""
    started: dict[str, NginxServer] = {}
    yield started
    for server in started.values():
        server.stop()


def start_nginx(
    started: dict[str, NginxServer], name: str, root: Path, tmp: Path, rig: TLSServerFactory
) -> NginxServer:
    server = NginxServer(root, tmp / f"nginx-{name}", rig)
    server.start()
    started[name] = server
    return server


def publish(publisher: Publisher, canary: Path, value: str) -> None:
    publisher.write("npkg/__init__.py", "from .core import VALUE\n" + canary_code(canary))
    publisher.write("npkg/core.py", f"VALUE = {value!r}\n")
    publisher.write("npkg/extra.py", "EXTRA = 1\n")
    publisher.publish()


def loads(consumer: Consumer) -> list[dict[str, object]]:
    return [r for r in consumer.audit() if r["event"] == "load"]


def test_nginx_mirror_serves_import_and_freshness_while_the_origin_fails(
    tmp_path: Path,
    rig: TLSServerFactory,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    nginx_at: dict[str, NginxServer],
) -> None:
    publish(publisher, canary, "one")
    # nginx serves the publisher's own output directory: a mirror kept in sync.
    nginx = start_nginx(nginx_at, "mirror", publisher.out, tmp_path, rig)
    publisher.server._hook = lambda request: Response(status=503)  # the origin fails
    consumer.add(mirrors=[nginx.url])
    module = importlib.import_module("npkg")
    assert module.VALUE == "one" and canary.exists()
    assert module.__file__ == publisher.url + "npkg/__init__.py"
    cold = nginx.requests()
    assert len(cold) == 2 and cold[0].path == "/" + MANIFEST_NAME
    assert cold[1].path.startswith(f"/{BUNDLE_DIR}/npkg.")
    assert {r.status for r in cold} == {200}
    host = served_host(nginx.url)
    assert {r["host"] for r in loads(consumer)} == {host}
    consumer.assert_cache_verified()

    # Freshness: the next process asks nginx for the pointer only.
    nginx.clear_log()
    consumer.new_process(mirrors=[nginx.url])
    assert importlib.import_module("npkg").VALUE == "one"
    assert [(r.path, r.status) for r in nginx.requests()] == [("/" + POINTER_NAME, 200)]
    manifest = [r for r in consumer.audit() if r["event"] == "manifest"][-1]
    assert manifest["host"] == host

    # A new release on the mirror is picked up through it.
    publisher.server._hook = None
    publish(publisher, canary, "two")
    publisher.server._hook = lambda request: Response(status=503)
    consumer.new_process(mirrors=[nginx.url])
    assert importlib.import_module("npkg").VALUE == "two"
    assert [r for r in consumer.audit() if r["event"] == "manifest"][-1]["manifest_version"] == 2


def test_nginx_origin_without_the_files_fails_over_to_our_mirror_on_not_found(
    tmp_path: Path,
    rig: TLSServerFactory,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    nginx_at: dict[str, NginxServer],
) -> None:
    publish(publisher, canary, "one")
    empty = tmp_path / "nginx-empty-root"
    empty.mkdir()
    origin = start_nginx(nginx_at, "origin", empty, tmp_path, rig)
    consumer.add(url=origin.url, mirrors=[publisher.url], fallback="on-not-found")
    module = importlib.import_module("npkg")
    assert module.VALUE == "one" and canary.exists()
    assert module.__file__ == origin.url + "npkg/__init__.py"  # names stay the origin's
    first = origin.requests()[0]
    assert (first.path, first.status) == ("/" + MANIFEST_NAME, 404)  # nginx's own 404
    assert "/" + MANIFEST_NAME in publisher.request_paths()
    assert {r["host"] for r in loads(consumer)} == {served_host(publisher.url)}
    consumer.assert_cache_verified()


def test_nginx_origin_down_fails_over_to_our_mirror_on_error(
    tmp_path: Path,
    rig: TLSServerFactory,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    nginx_at: dict[str, NginxServer],
) -> None:
    publish(publisher, canary, "one")
    origin = start_nginx(nginx_at, "origin", publisher.out, tmp_path, rig)
    origin_url = origin.url
    origin.stop()  # nginx gone: connection refused
    consumer.add(url=origin_url, mirrors=[publisher.url])
    assert importlib.import_module("npkg").VALUE == "one"
    assert {r["host"] for r in loads(consumer)} == {served_host(publisher.url)}


def test_h11_a_stale_nginx_mirror_is_refused_as_rollback_and_audited(
    tmp_path: Path,
    rig: TLSServerFactory,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    nginx_at: dict[str, NginxServer],
) -> None:
    publish(publisher, canary, "one")
    stale_root = tmp_path / "stale-copy"
    shutil.copytree(publisher.out, stale_root)
    nginx = start_nginx(nginx_at, "stale", stale_root, tmp_path, rig)
    publish(publisher, canary, "two")
    consumer.add(mirrors=[nginx.url])
    assert importlib.import_module("npkg").VALUE == "two"
    publisher.close()
    canary.unlink()
    consumer.new_process(mirrors=[nginx.url])
    with pytest.raises(RollbackError):
        importlib.import_module("npkg")
    assert not canary.exists()
    (stale,) = [r for r in consumer.audit() if r["event"] == "mirror"]
    assert stale["host"] == served_host(nginx.url) and stale["code"] == "rollback"
    assert ("/" + MANIFEST_NAME, 200) in [(r.path, r.status) for r in nginx.requests()]


def test_our_server_and_nginx_are_distinct_origins(
    tmp_path: Path, rig: TLSServerFactory, publisher: Publisher, need_nginx: None
) -> None:
    """The rig's premise: another port is another origin (redirects and
    credentials are bound per origin)."""
    copy = tmp_path / "copy"
    copy.mkdir()
    with RepoServer(copy, ssl_context=rig.server_context()) as other:
        assert served_host(other.url) != served_host(publisher.url)
