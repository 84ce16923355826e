"""Mirrors end to end over real HTTPS (THREATS H11, T1, T2).

The origin is the publisher simulator's server; each mirror is another real
server on 127.0.0.1 (another port: another origin) serving a copy of the
published directory taken at some point, with its own scripted misbehaviour.
Every test asserts the state afterwards: whether the canary module ran,
that the cache holds only verified bytes, and what the audit log says about
the host that served the bytes or was refused.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import BUNDLE_DIR, MANIFEST_NAME, Limits
from secure_import.errors import (
    AllSourcesFailedError,
    HashMismatchError,
    HTTPStatusError,
    LengthMismatchError,
    RollbackError,
    ThresholdError,
)
from secure_import.hook.finder import get_finder
from secure_import.publish.serve import RepoServer, RequestInfo, Response
from secure_import.store import childdesc
from secure_import.transport.mirrors import served_host
from secure_import.transport.options import AuthHeader, TransportOptions
from secure_import.verify.pointer import POINTER_NAME

from .clirunner import run_cli, run_json
from .conftest import Consumer, Publisher, canary_code
from .httpsrig import TLSServerFactory


class Mirror:
    """A second HTTPS server holding a copy of the published directory."""

    def __init__(self, root: Path, rig: TLSServerFactory) -> None:
        self.root = root
        self.scripted: Callable[[RequestInfo], Response | None] | None = None
        self.server = RepoServer(root, ssl_context=rig.server_context(), handler_hook=self._hook)
        self.server.start()

    def _hook(self, request: RequestInfo) -> Response | None:
        return None if self.scripted is None else self.scripted(request)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return served_host(self.url)

    def paths(self) -> list[str]:
        return [r.path for r in self.server.requests]

    def sync(self, publisher: Publisher) -> None:
        """Copy what the origin serves now (what a mirror job does)."""
        shutil.rmtree(self.root)
        shutil.copytree(publisher.out, self.root)


@pytest.fixture
def make_mirror(
    tmp_path: Path, rig: TLSServerFactory, publisher: Publisher
) -> Iterator[Callable[[], Mirror]]:
    made: list[Mirror] = []

    def make() -> Mirror:
        root = tmp_path / f"mirror-{len(made)}"
        shutil.copytree(publisher.out, root)
        mirror = Mirror(root, rig)
        made.append(mirror)
        return mirror

    yield make
    for mirror in made:
        mirror.server.stop()


def closed_port_url() -> str:
    """An https URL on 127.0.0.1 where nothing listens (a source that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}/"


def publish_mpkg(publisher: Publisher, canary: Path, value: str = "one") -> None:
    publisher.write("mpkg/__init__.py", "from . import a, b, c\n" + canary_code(canary))
    publisher.write("mpkg/a.py", f"VALUE = {value!r}\n")
    publisher.write("mpkg/b.py", "B = 2\n")
    publisher.write("mpkg/c.py", "C = 3\n")
    publisher.publish()


def records(consumer: Consumer, event: str) -> list[dict[str, Any]]:
    return [r for r in consumer.audit() if r["event"] == event]


def origin_says(publisher: Publisher, status: int) -> None:
    """Every request to the origin answers ``status``."""
    publisher.server._hook = lambda request: Response(status=status)


def test_h11_origin_down_the_mirror_serves_verified_bytes_audited_with_its_host(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    origin_url = publisher.url
    publisher.close()  # the origin is down: connection refused
    repo = consumer.add(mirrors=[mirror.url])
    module = importlib.import_module("mpkg")
    assert module.a.VALUE == "one" and canary.exists()
    # Names and URLs stay the repository's: a mirror is transport only.
    assert module.__file__ == origin_url + "mpkg/__init__.py"
    # The cold import's two requests (manifest, package bundle) reached the mirror.
    served = mirror.paths()
    assert len(served) == 2 and served[0] == "/" + MANIFEST_NAME
    assert served[1].startswith(f"/{BUNDLE_DIR}/mpkg.")
    consumer.assert_cache_verified()
    (manifest,) = records(consumer, "manifest")
    assert manifest["outcome"] == "ok" and manifest["host"] == mirror.host
    assert manifest["url"] == repo.manifest_url
    loads = records(consumer, "load")
    assert {r["module"] for r in loads} == {"mpkg", "mpkg.a", "mpkg.b", "mpkg.c"}
    assert {r["host"] for r in loads} == {mirror.host}


def test_origin_up_the_mirror_is_never_asked_and_loads_name_the_origin(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    consumer.add(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    assert mirror.paths() == []
    origin = served_host(publisher.url)
    assert {r["host"] for r in records(consumer, "load")} == {origin}
    assert records(consumer, "manifest")[0]["host"] == origin
    # The next process loads from the verified cache: the record says so.
    consumer.new_process(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    later = records(consumer, "load")[4:]
    assert later and {r["host"] for r in later} == {"cache"}


@pytest.mark.parametrize("status", [404, 410])
def test_origin_not_found_with_on_not_found_goes_to_the_mirror(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
    status: int,
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    origin_says(publisher, status)
    consumer.add(mirrors=[mirror.url], fallback="on-not-found")
    assert importlib.import_module("mpkg").a.VALUE == "one"
    assert canary.exists()
    assert {r["host"] for r in records(consumer, "load")} == {mirror.host}
    consumer.assert_cache_verified()


def test_origin_500_with_on_not_found_does_not_fail_over_and_says_why(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    origin_says(publisher, 500)
    consumer.add(mirrors=[mirror.url], fallback="on-not-found")
    with pytest.raises(HTTPStatusError) as caught:
        importlib.import_module("mpkg")
    assert caught.value.got == 500
    assert publisher.url + MANIFEST_NAME in str(caught.value)
    assert mirror.paths() == []  # the policy said: only a missing resource fails over
    assert not canary.exists()
    assert consumer.cached_objects() == {}
    (refusal,) = consumer.refusals()
    assert refusal["code"] == "http-status"


@pytest.mark.parametrize("fallback", ["on-error", "on-not-found"])
def test_h11_tampered_bytes_from_the_origin_are_refused_not_replaced_by_the_mirror(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
    fallback: str,
) -> None:
    """The policy: a hash or length failure is a trust failure, never a reason
    to try the next source (a mirror would hide an attack on the origin)."""
    publish_mpkg(publisher, canary)
    mirror = make_mirror()  # an honest copy
    evil = b"VALUE = 'evil'\n" + canary_code(canary).encode()
    publisher.tamper("mpkg/a.py", evil)
    consumer.add(mirrors=[mirror.url], fallback=fallback)
    with pytest.raises((HashMismatchError, LengthMismatchError)) as caught:
        importlib.import_module("mpkg")
    assert caught.value.url is not None and caught.value.url.startswith(publisher.url)
    assert [p for p in mirror.paths() if p.startswith(("/mpkg", "/" + BUNDLE_DIR))] == []
    assert not canary.exists()
    consumer.assert_cache_verified(absent=evil)
    assert consumer.refusals()[-1]["code"] in ("hash-mismatch", "length-mismatch")
    assert records(consumer, "load") == []


def test_h11_tampered_bytes_from_a_mirror_are_refused_and_name_the_mirror(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    evil = b"VALUE = 'evil'\n" + canary_code(canary).encode()
    (mirror.root / "mpkg" / "a.py").write_bytes(evil)
    bundles = list((mirror.root / BUNDLE_DIR).glob("mpkg.*"))
    assert bundles
    for bundle in bundles:
        bundle.unlink()  # file by file, so the mirror's altered a.py is served
    publisher.close()
    consumer.add(mirrors=[mirror.url])
    with pytest.raises((HashMismatchError, LengthMismatchError)) as caught:
        importlib.import_module("mpkg")
    assert caught.value.url == mirror.url + "mpkg/a.py"  # the URL actually fetched
    assert not canary.exists()
    consumer.assert_cache_verified(absent=evil)
    refusal = consumer.refusals()[-1]
    assert refusal["url"] == mirror.url + "mpkg/a.py"


def test_h11_a_stale_mirror_is_refused_as_rollback_and_audited_with_its_host(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """THREATS H11: a validly signed but older manifest from a mirror."""
    publish_mpkg(publisher, canary, value="one")
    mirror = make_mirror()  # holds release one and never syncs again
    publish_mpkg(publisher, canary, value="two")
    consumer.add(mirrors=[mirror.url])
    assert importlib.import_module("mpkg").a.VALUE == "two"  # high-water mark: 2
    assert mirror.paths() == []
    cached_before = consumer.snapshot()
    publisher.close()  # the origin goes down; only the stale mirror answers
    canary.unlink()
    consumer.new_process(mirrors=[mirror.url])
    with pytest.raises(RollbackError) as caught:
        importlib.import_module("mpkg")
    assert caught.value.url == mirror.url + MANIFEST_NAME
    assert not canary.exists()
    (stale,) = records(consumer, "mirror")
    assert stale["outcome"] == "refused" and stale["code"] == "rollback"
    assert stale["host"] == mirror.host and stale["url"] == mirror.url + MANIFEST_NAME
    assert "stale" in stale["message"]
    assert consumer.refusals()[-1]["code"] == "rollback"
    # Nothing of release one was cached or stored: the state is as before.
    assert consumer.snapshot() == cached_before


def test_a_mirror_cannot_widen_the_repository_a_foreign_key_is_refused(
    tmp_path: Path,
    rig: TLSServerFactory,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """A mirror serving a repository signed by another key (more names, or
    other code) is refused like any server: the pins are the repository's."""
    publish_mpkg(publisher, canary)
    other = Publisher(tmp_path, rig, name="intruder")
    try:
        other.write("mpkg/__init__.py", canary_code(canary))
        other.write("extra/__init__.py", canary_code(canary))
        other.publish()
        mirror = make_mirror()
        mirror.sync(other)
    finally:
        other.close()
    publisher.close()
    consumer.add(mirrors=[mirror.url])
    with pytest.raises(ThresholdError):
        importlib.import_module("mpkg")
    assert not canary.exists()
    assert consumer.cached_objects() == {}
    (refused,) = records(consumer, "mirror")
    assert refused["host"] == mirror.host and refused["code"] == "threshold-not-met"
    assert "failed verification" in refused["message"]


def test_all_sources_down_is_one_error_listing_each_attempt(
    publisher: Publisher, consumer: Consumer, canary: Path
) -> None:
    publish_mpkg(publisher, canary)
    origin = publisher.url
    publisher.close()
    first, second = closed_port_url(), closed_port_url()
    consumer.add(mirrors=[first, second])
    with pytest.raises(AllSourcesFailedError) as caught:
        importlib.import_module("mpkg")
    err = caught.value
    # The first request is the manifest (nothing cached): each source was asked once.
    assert [url for url, _ in err.attempts] == [
        origin + MANIFEST_NAME,
        first + MANIFEST_NAME,
        second + MANIFEST_NAME,
    ]
    assert all(what.startswith("connection-failed") for _, what in err.attempts)
    for url, _ in err.attempts:
        assert url in str(err)
    assert not canary.exists()
    refusal = consumer.refusals()[-1]
    assert refusal["code"] == "all-sources-failed"
    assert second + MANIFEST_NAME in refusal["message"]


def test_all_sources_down_with_a_cached_manifest_uses_it_offline(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """All sources failing is a transport failure: the verified cached copy
    stands in (audited offline), exactly as for a repository without mirrors."""
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    consumer.add(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    publisher.close()
    mirror.server.stop()
    consumer.new_process(mirrors=[mirror.url])
    assert importlib.import_module("mpkg").a.VALUE == "one"
    last = records(consumer, "manifest")[-1]
    assert last["outcome"] == "offline" and "all-sources-failed" in last["message"]


def test_a_mirror_redirect_off_its_own_origin_is_refused(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """THREATS T2 per source: the elsewhere server holds an honest copy, and
    still is never asked; only the mirror's own origin may be redirected to."""
    publish_mpkg(publisher, canary)
    mirror, elsewhere = make_mirror(), make_mirror()
    mirror.scripted = lambda request: Response.redirect(elsewhere.url + request.path.lstrip("/"))
    publisher.close()
    consumer.add(mirrors=[mirror.url])
    with pytest.raises(AllSourcesFailedError) as caught:
        importlib.import_module("mpkg")
    assert [what.split(" ")[0] for _, what in caught.value.attempts] == [
        "connection-failed",
        "redirect-refused",
    ]
    assert elsewhere.paths() == []
    assert not canary.exists()


def test_a_mirror_redirect_on_its_own_origin_is_followed(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    shutil.copytree(mirror.root, mirror.root / "v1")

    def moved(request: RequestInfo) -> Response | None:
        if request.path.startswith("/v1/"):
            return None
        return Response.redirect("/v1" + request.path)

    mirror.scripted = moved
    publisher.close()
    consumer.add(mirrors=[mirror.url])
    assert importlib.import_module("mpkg").a.VALUE == "one"
    assert "/v1/" + MANIFEST_NAME in mirror.paths()


def test_the_credential_and_client_identity_never_reach_a_mirror(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    origin_says(publisher, 503)
    secret = "Bearer s3cr3t-mirror-test-token"
    repo = secure_import.Repository(
        publisher.url,
        keys=[publisher.pub_path],
        ca_bundle=publisher.rig.ca_pem_path,
        paths=consumer.paths,
        mirrors=[mirror.url],
        transport=TransportOptions(auth=AuthHeader("Authorization", secret)),
    )
    get_finder().add(repo)
    assert importlib.import_module("mpkg").a.VALUE == "one"
    origin_headers = [r.headers for r in publisher.server.requests]
    assert origin_headers and all(h.get("authorization") == secret for h in origin_headers)
    mirror_headers = [r.headers for r in mirror.server.requests]
    assert mirror_headers and all("authorization" not in h for h in mirror_headers)
    assert "s3cr3t" not in consumer.paths.audit_log.read_text()


def test_freshness_through_a_mirror_picks_up_a_new_release_and_checks_the_pointer(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    publish_mpkg(publisher, canary, value="one")
    mirror = make_mirror()
    origin_says(publisher, 502)
    consumer.add(mirrors=[mirror.url])
    assert importlib.import_module("mpkg").a.VALUE == "one"
    # Warm, unchanged: one pointer request, answered by the mirror.
    mirror.server.clear_requests()
    consumer.new_process(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    assert mirror.paths() == ["/" + POINTER_NAME]
    assert records(consumer, "manifest")[-1]["host"] == mirror.host
    # A new release reaches the mirror: the next process takes it.
    publisher.server._hook = None
    publish_mpkg(publisher, canary, value="two")
    mirror.sync(publisher)
    origin_says(publisher, 502)
    consumer.new_process(mirrors=[mirror.url])
    assert importlib.import_module("mpkg").a.VALUE == "two"
    assert records(consumer, "manifest")[-1]["manifest_version"] == 2


def test_audit_show_host_filters_by_the_host_that_served_the_bytes(
    tmp_path: Path,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """``secure-import audit show --host``: the origin's loads in one process,
    the mirror's in the next (origin down, cache cleared), a stale refusal."""
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    consumer.add(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    origin_host = served_host(publisher.url)
    shutil.rmtree(consumer.paths.cache_dir)
    publisher.close()
    consumer.new_process(mirrors=[mirror.url])
    importlib.import_module("mpkg")
    dirs = [
        "--cache-dir",
        consumer.paths.cache_dir,
        "--state-dir",
        consumer.paths.state_dir,
        "--log-dir",
        consumer.paths.log_dir,
    ]
    by_origin = run_json(tmp_path, "audit", "show", *dirs, "--host", origin_host)
    by_mirror = run_json(tmp_path, "audit", "show", *dirs, "--host", mirror.host, "--event", "load")
    assert {r["module"] for r in by_origin if r["event"] == "load"} == {
        "mpkg",
        "mpkg.a",
        "mpkg.b",
        "mpkg.c",
    }
    assert {r["event"] for r in by_origin} == {"manifest", "load"}
    assert len(by_mirror) == 4 and {r["host"] for r in by_mirror} == {mirror.host}
    # Without the port, the host name alone matches (both are 127.0.0.1 here).
    both = run_json(tmp_path, "audit", "show", *dirs, "--host", "127.0.0.1", "--event", "load")
    assert len(both) == 8
    assert run_json(tmp_path, "audit", "show", *dirs, "--host", "elsewhere.example") == []
    human = run_cli(tmp_path, "audit", "show", *dirs, "--host", mirror.host)
    assert human.returncode == 0 and mirror.host in human.stdout


def test_a_child_interpreter_inherits_the_mirrors_and_policy(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """A ``subprocess`` child rebuilds the repository with its mirrors: with
    the origin down, it imports through the mirror and audits the host."""
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    repo = consumer.add(mirrors=[mirror.url], fallback="on-not-found")
    (described,) = childdesc.decode(childdesc.encode(_description())).repositories
    assert described.mirrors == (mirror.url,)
    assert described.fallback == "on-not-found"
    origin_says(publisher, 404)
    proc = subprocess.run(
        [sys.executable, "-c", "import mpkg; print(mpkg.a.VALUE)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "one" and canary.exists()
    loads = records(consumer, "load")
    assert loads and {r["host"] for r in loads} == {mirror.host}
    assert {r["repo"] for r in loads} == {repo.url}


def _description() -> childdesc.ChildDescription:
    from secure_import.hook import inherit

    repos = [inherit.describe(r) for r in get_finder().repositories]
    return childdesc.ChildDescription(
        created=0, pid=0, repositories=tuple(r for r in repos if r is not None)
    )


def test_check_reports_a_mirror_in_sync_and_a_stale_one(
    tmp_path: Path,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """``secure-import check`` compares each mirror's manifest with the one it
    just verified: a stale mirror is found before a failover would need it."""
    publish_mpkg(publisher, canary, value="one")
    stale = make_mirror()
    publish_mpkg(publisher, canary, value="two")
    synced = make_mirror()
    config = tmp_path / "check.toml"
    config.write_text(
        "[repositories.m]\n"
        f'url = "{publisher.url}"\n'
        f'keys = ["{publisher.pub_path}"]\n'
        'modules = ["mpkg"]\n'
        f'ca_bundle = "{publisher.rig.ca_pem_path}"\n'
        f'mirrors = ["{synced.url}", "{stale.url}"]\n'
    )
    config.chmod(0o600)
    report = run_json(tmp_path, "--config", config, "--no-project", "check", expect=1)
    mirrors = [f for f in report["findings"] if f["check"] == "mirror"]
    assert [
        (f["ok"], f["detail"].startswith(url))
        for f, url in zip(mirrors, (synced.url, stale.url), strict=True)
    ] == [
        (True, True),
        (False, True),
    ]
    assert "another manifest" in mirrors[1]["detail"]
    listed = [f for f in report["findings"] if f["check"] == "mirrors"]
    assert listed and "on-error" in listed[0]["detail"]
    shown = run_cli(tmp_path, "--config", config, "--no-project", "config")
    assert shown.returncode == 0 and "2 (on-error)" in shown.stdout
    described = run_json(tmp_path, "--config", config, "--no-project", "config")
    assert described["repositories"][0]["mirrors"] == [synced.url, stale.url]


def test_a_silent_origin_is_given_up_after_failover_after_not_the_read_bound(
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    make_mirror: Callable[[], Mirror],
) -> None:
    """An origin that accepts the TCP connection and never speaks (a hung
    host): with mirrors under on-error, it is given up after
    ``Limits.failover_after`` (0.5 s here), not ``throughput_window`` (60 s
    here, which would outlast this test's bound many times)."""
    publish_mpkg(publisher, canary)
    mirror = make_mirror()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # never accepted: TCP completes, TLS never starts
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"
        limits = Limits(failover_after=0.5, throughput_window=60.0, read_timeout=60.0)
        started = time.monotonic()
        repo = consumer.add(url=url, mirrors=[mirror.url], limits=limits)
        assert importlib.import_module("mpkg").a.VALUE == "one"
        elapsed = time.monotonic() - started
    assert elapsed < 30.0, elapsed  # the full read bound would be 60 s per request
    assert canary.exists()
    assert {r["host"] for r in records(consumer, "load")} == {mirror.host}
    assert repo.fallback == "on-error"
