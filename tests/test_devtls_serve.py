"""Real HTTPS against ``RepoServer`` on 127.0.0.1: serving, refusals, misbehaviour, TLS.

The server is test infrastructure for the transport threats (T2-T10), so these
tests pin down that each scripted misbehaviour really happens on the wire, that
every slow mode is bounded, and that the development CA verifies only when the
client is given it.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from secure_import.errors import ConfigError
from secure_import.publish.devtls import (
    DevCertificates,
    make_dev_certificates,
    server_ssl_context,
)
from secure_import.publish.serve import RepoServer, RequestInfo, Response
from tests.httpsrig import (
    TLSServerFactory,
    expired_context,
    make_rig,
    self_signed_context,
    wrong_host_context,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODULE_BYTES = b"VALUE = 42\n" * 50


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> TLSServerFactory:
    return make_rig(tmp_path_factory.mktemp("rig"))


@pytest.fixture(scope="module")
def server_ctx(rig: TLSServerFactory) -> ssl.SSLContext:
    return rig.server_context()


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A repository root with a module, a subpackage, dotfiles, and a secret outside it."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "mod.py").write_bytes(MODULE_BYTES)
    (root / "pkg" / "__init__.py").write_bytes(b"")
    (root / "manifest.json").write_bytes(b'{"version": 1}')
    (root / ".hidden").write_bytes(b"hidden")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]")
    (tmp_path / "secret.txt").write_bytes(b"TOP SECRET")
    return root


ServerMaker = Callable[..., RepoServer]


@pytest.fixture
def make_server(repo_dir: Path, server_ctx: ssl.SSLContext) -> Iterator[ServerMaker]:
    """Start RepoServers on demand; all are stopped at teardown."""
    started: list[RepoServer] = []

    def make(hook: Callable[[RequestInfo], Response | None] | None = None) -> RepoServer:
        server = RepoServer(repo_dir, ssl_context=server_ctx, handler_hook=hook)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        assert server.errors == []


@pytest.fixture
def client(rig: TLSServerFactory) -> Iterator[httpx.Client]:
    with httpx.Client(verify=rig.client_context(), timeout=5.0) as c:
        yield c


def raw_get(server: RepoServer, target: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    """Send a request line verbatim (httpx would normalise ``..`` away); return status, body."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request.encode())
        data = b""
        while len(data) < 1_000_000:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- normal serving ----------------------------------------------------------


def test_served_file_bytes_equal_the_file(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server()
    r = client.get(server.url + "mod.py")
    assert r.status_code == 200
    assert r.content == MODULE_BYTES
    assert r.http_version == "HTTP/1.1"
    assert r.headers["content-length"] == str(len(MODULE_BYTES))
    assert r.headers["etag"] == f'"{hashlib.sha256(MODULE_BYTES).hexdigest()}"'
    # httpx asks for gzip by default; the server must still send bytes as stored.
    assert "content-encoding" not in r.headers
    assert server.url.startswith("https://127.0.0.1:")


def test_head_sends_headers_without_body(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server()
    r = client.head(server.url + "mod.py")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(MODULE_BYTES))
    assert r.content == b""


def test_keep_alive_reuses_one_connection(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server()
    first = client.get(server.url + "mod.py")
    second = client.get(server.url + "manifest.json")
    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


def test_if_none_match_with_current_etag_gets_304_without_body(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    server = make_server()
    etag = client.get(server.url + "mod.py").headers["etag"]
    r = client.get(server.url + "mod.py", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    stale = client.get(server.url + "mod.py", headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200
    assert stale.content == MODULE_BYTES


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/pkg/../../secret.txt",
        "/pkg/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/pkg%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "//secret.txt",
        "/mod.py%00",
        "/%ff",
    ],
)
def test_path_traversal_is_404(
    make_server: ServerMaker, rig: TLSServerFactory, target: str
) -> None:
    server = make_server()
    status, body = raw_get(server, target, rig.client_context())
    assert status == 404
    assert b"SECRET" not in body


def test_symlink_out_of_root_is_404(
    make_server: ServerMaker, repo_dir: Path, client: httpx.Client
) -> None:
    (repo_dir / "escape.txt").symlink_to(repo_dir.parent / "secret.txt")
    (repo_dir / "sneaky").symlink_to(repo_dir / ".hidden")
    server = make_server()
    assert client.get(server.url + "escape.txt").status_code == 404
    assert client.get(server.url + "sneaky").status_code == 404


@pytest.mark.parametrize(
    "path", [".hidden", ".git/config", "%2ehidden", "pkg", "pkg/", "", "missing.py"]
)
def test_dotfiles_directories_and_missing_files_are_404(
    make_server: ServerMaker, client: httpx.Client, path: str
) -> None:
    server = make_server()
    r = client.get(server.url + path)
    assert r.status_code == 404
    assert b"hidden" not in r.content


def test_other_methods_are_refused(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server()
    r = client.post(server.url + "mod.py", content=b"x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


def test_requests_are_recorded_and_can_be_cleared(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    server = make_server()
    before = time.monotonic()
    client.get(server.url + "mod.py?x=1", headers={"X-Probe": "yes"})
    client.head(server.url + "missing")
    reqs = server.requests
    assert [(r.method, r.path) for r in reqs] == [("GET", "/mod.py?x=1"), ("HEAD", "/missing")]
    assert reqs[0].headers["x-probe"] == "yes"
    assert reqs[0].headers["host"].startswith("127.0.0.1:")
    assert before <= reqs[0].time <= reqs[1].time <= time.monotonic()
    server.clear_requests()
    assert server.requests == []


def test_server_only_listens_on_loopback(make_server: ServerMaker) -> None:
    server = make_server()
    assert server._httpd is not None
    assert server._httpd.server_address[0] == "127.0.0.1"


def test_missing_root_is_a_config_error(tmp_path: Path, server_ctx: ssl.SSLContext) -> None:
    with pytest.raises(ConfigError):
        RepoServer(tmp_path / "nope", ssl_context=server_ctx)


def test_url_before_start_is_an_error(repo_dir: Path, server_ctx: ssl.SSLContext) -> None:
    server = RepoServer(repo_dir, ssl_context=server_ctx)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.stop()  # harmless before start


# --- scripted misbehaviour ---------------------------------------------------


def test_hook_sees_every_request_and_none_means_normal_serving(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    seen: list[str] = []

    def hook(info: RequestInfo) -> Response | None:
        seen.append(info.path)
        return None

    server = make_server(hook)
    assert client.get(server.url + "mod.py").content == MODULE_BYTES
    assert seen == ["/mod.py"]


def test_hook_redirect_to_any_url(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server(lambda info: Response.redirect("http://127.0.0.1:1/evil.py"))
    r = client.get(server.url + "mod.py", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "http://127.0.0.1:1/evil.py"
    # The connection stays usable after a scripted answer.
    r2 = client.get(server.url + "mod.py")
    assert r2.status_code == 302


@pytest.mark.parametrize("status", [404, 500, 503])
def test_hook_status_with_body_and_headers(
    make_server: ServerMaker, client: httpx.Client, status: int
) -> None:
    server = make_server(lambda info: Response(status, b"oops", headers={"X-Why": "test"}))
    r = client.get(server.url + "mod.py")
    assert r.status_code == status
    assert r.content == b"oops"
    assert r.headers["x-why"] == "test"


def test_hook_delay_holds_back_headers(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server(lambda info: Response(body=b"late", delay=0.4))
    start = time.monotonic()
    r = client.get(server.url + "x")
    assert r.content == b"late"
    assert time.monotonic() - start >= 0.35
    with pytest.raises(httpx.ReadTimeout):
        client.get(server.url + "x", timeout=httpx.Timeout(5.0, read=0.1))


def test_hook_drip_sends_one_byte_per_interval(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    server = make_server(lambda info: Response(body=b"abcdef", drip_interval=0.05))
    start = time.monotonic()
    arrivals: list[float] = []
    with client.stream("GET", server.url + "x") as r:
        assert r.headers["content-length"] == "6"
        body = b""
        for chunk in r.iter_raw():
            body += chunk
            arrivals.append(time.monotonic())
    assert body == b"abcdef"
    assert time.monotonic() - start >= 0.25
    assert len(arrivals) >= 3  # it really arrived piecemeal


def test_drip_is_bounded_by_max_duration(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server(
        lambda info: Response(body=b"x" * 1000, drip_interval=0.05, max_duration=0.3)
    )
    start = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(server.url + "x")
    assert time.monotonic() - start < 2.0


def test_stop_returns_quickly_during_a_drip(
    make_server: ServerMaker, rig: TLSServerFactory
) -> None:
    server = make_server(lambda info: Response(body=b"x" * 1000, drip_interval=0.5))
    outcome: list[BaseException | bytes] = []
    got_headers = threading.Event()

    def fetch() -> None:
        try:
            with (
                httpx.Client(verify=rig.client_context(), timeout=10.0) as c,
                c.stream("GET", server.url + "x") as r,
            ):
                got_headers.set()
                outcome.append(r.read())
        except httpx.HTTPError as exc:
            outcome.append(exc)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    assert got_headers.wait(5)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2.0
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.HTTPError)  # the body never completed


def test_stop_returns_quickly_during_a_delay(
    make_server: ServerMaker, rig: TLSServerFactory
) -> None:
    server = make_server(lambda info: Response(body=b"x", delay=20))
    outcome: list[BaseException | bytes] = []

    def fetch() -> None:
        try:
            outcome.append(httpx.get(server.url, verify=rig.client_context(), timeout=10).content)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2.0
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.HTTPError)  # stopped before any response


def test_truncated_body_announces_full_length_then_closes(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    server = make_server(lambda info: Response(body=b"y" * 1000, truncate_after=100))
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", server.url + "x") as r:
        assert r.headers["content-length"] == "1000"
        for chunk in r.iter_raw():
            received += chunk
    assert received == b"y" * 100


def test_endless_body_stops_when_client_gives_up(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    server = make_server(lambda info: Response(endless=True))
    cap = 1_000_000
    received = 0
    start = time.monotonic()
    with client.stream("GET", server.url + "x") as r:
        assert "content-length" not in r.headers
        for chunk in r.iter_raw():
            received += len(chunk)
            if received > cap:
                break
    assert received > cap
    assert time.monotonic() - start < 5
    # The server notices the hang-up and its thread ends.
    deadline = time.monotonic() + 3
    while server._connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server._connections


@pytest.mark.parametrize("chunked", [False, True])
def test_endless_body_is_capped_by_max_bytes(
    make_server: ServerMaker, client: httpx.Client, chunked: bool
) -> None:
    server = make_server(
        lambda info: Response(body=b"ab", endless=True, max_bytes=300_001, chunked=chunked)
    )
    parts: list[bytes] = []
    try:
        with client.stream("GET", server.url + "x") as r:
            assert ("transfer-encoding" in r.headers) is chunked
            parts.extend(r.iter_raw())
    except httpx.RemoteProtocolError:
        assert chunked  # an unterminated chunked body is a protocol error
    received = b"".join(parts)
    assert len(received) == 300_001
    assert received.startswith(b"abab")


def test_gzip_header_is_sent_but_body_is_untouched(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    bomb = gzip.compress(b"\0" * 1_000_000)
    server = make_server(lambda info: Response(body=bomb, headers={"Content-Encoding": "gzip"}))
    with client.stream("GET", server.url + "x") as r:
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["content-length"] == str(len(bomb))
        raw = b"".join(r.iter_raw())
    assert raw == bomb


def test_lying_content_length(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server(lambda info: Response(body=b"z" * 10, content_length=5))
    r = client.get(server.url + "x")
    assert r.content == b"z" * 5


def test_abort_resets_without_a_response(make_server: ServerMaker, client: httpx.Client) -> None:
    server = make_server(lambda info: Response(abort=True))
    with pytest.raises(httpx.TransportError):
        client.get(server.url + "x")


def test_hook_can_misbehave_with_real_file_bytes(
    make_server: ServerMaker, client: httpx.Client
) -> None:
    holder: list[RepoServer] = []

    def hook(info: RequestInfo) -> Response | None:
        data = holder[0].read_file(info.path)
        return None if data is None else Response(body=data + b"EXTRA")

    server = make_server(hook)
    holder.append(server)
    assert client.get(server.url + "mod.py").content == MODULE_BYTES + b"EXTRA"
    assert client.get(server.url + ".hidden").status_code == 404


def test_hook_exception_is_recorded_not_printed(
    repo_dir: Path,
    server_ctx: ssl.SSLContext,
    client: httpx.Client,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def hook(info: RequestInfo) -> Response | None:
        raise ZeroDivisionError("hook bug")

    with RepoServer(repo_dir, ssl_context=server_ctx, handler_hook=hook) as server:
        with pytest.raises(httpx.TransportError):
            client.get(server.url + "mod.py")
        deadline = time.monotonic() + 2
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [type(e) for e in server.errors] == [ZeroDivisionError]
    out, err = capfd.readouterr()
    assert out == err == ""


def test_response_rejects_unbounded_settings() -> None:
    with pytest.raises(ValueError):
        Response(max_bytes=10**12)
    with pytest.raises(ValueError):
        Response(delay=-1)


# --- development certificates ------------------------------------------------


@pytest.fixture(scope="module")
def dev_certs() -> DevCertificates:
    return make_dev_certificates()


def test_dev_certificates_have_the_promised_shape(dev_certs: DevCertificates) -> None:
    ca = x509.load_pem_x509_certificate(dev_certs.ca_pem)
    leaf = x509.load_pem_x509_certificate(dev_certs.cert_chain_pem)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert bc.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert leaf.issuer == ca.subject
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    now = datetime.now(UTC)
    assert leaf.not_valid_before_utc <= now - timedelta(minutes=59)
    assert now + timedelta(days=1) < leaf.not_valid_after_utc <= now + timedelta(days=2)
    # The key is unencrypted and matches the leaf.
    key = serialization.load_pem_private_key(dev_certs.key_pem, password=None)
    assert key.public_key() == leaf.public_key()


def test_each_call_makes_a_new_ca() -> None:
    assert make_dev_certificates().ca_pem != make_dev_certificates().ca_pem


@pytest.mark.parametrize("hosts", [(), ("",), ("bad host",), ("ünïcode",)])
def test_dev_certificates_refuse_bad_hosts(hosts: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        make_dev_certificates(hosts)


def test_dev_certificates_refuse_bad_lifetimes() -> None:
    with pytest.raises(ConfigError):
        make_dev_certificates(valid_for=timedelta(0))


def test_server_ssl_context_is_tls12_plus_and_leaves_no_key_on_disk(
    dev_certs: DevCertificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ctx = server_ssl_context(dev_certs)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert list(scratch.iterdir()) == []


def test_server_ssl_context_rejects_mismatched_key(dev_certs: DevCertificates) -> None:
    other = make_dev_certificates()
    mixed = DevCertificates(dev_certs.ca_pem, dev_certs.cert_chain_pem, other.key_pem)
    with pytest.raises(ConfigError):
        server_ssl_context(mixed)


def test_dev_certificates_verify_with_the_ca_and_only_with_it(
    dev_certs: DevCertificates, repo_dir: Path, tmp_path: Path
) -> None:
    ca_path = tmp_path / "dev-ca.pem"
    ca_path.write_bytes(dev_certs.ca_pem)
    with RepoServer(repo_dir, ssl_context=server_ssl_context(dev_certs)) as server:
        verify = ssl.create_default_context(cafile=str(ca_path))
        r = httpx.get(server.url + "mod.py", verify=verify, timeout=5)
        assert r.content == MODULE_BYTES
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "mod.py", verify=True, timeout=5)  # system roots only
        # The name "localhost" is in the certificate too; other names are not.
        for name, ok in (("localhost", True), ("example.invalid", False)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                if ok:
                    verify.wrap_socket(sock, server_hostname=name).close()
                else:
                    with pytest.raises(ssl.SSLCertVerificationError):
                        verify.wrap_socket(sock, server_hostname=name)
        assert [r.path for r in server.requests] == ["/mod.py"]


# --- the trustme rig's bad servers (threat T4) -------------------------------


@pytest.mark.parametrize(
    "make_ctx",
    [wrong_host_context, expired_context, lambda rig: self_signed_context()],
    ids=["wrong-host", "expired", "self-signed"],
)
def test_bad_certificates_are_rejected_by_httpx(
    repo_dir: Path,
    rig: TLSServerFactory,
    make_ctx: Callable[[TLSServerFactory], ssl.SSLContext],
) -> None:
    with RepoServer(repo_dir, ssl_context=make_ctx(rig)) as server:
        with pytest.raises(httpx.ConnectError) as info:
            httpx.get(server.url + "mod.py", verify=rig.client_context(), timeout=5)
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
        assert server.requests == []  # no HTTP request crossed a rejected handshake


def test_good_rig_certificate_is_accepted(make_server: ServerMaker, rig: TLSServerFactory) -> None:
    server = make_server()
    r = httpx.get(server.url + "mod.py", verify=rig.client_context(), timeout=5)
    assert r.content == MODULE_BYTES


# --- the CLI entry point -----------------------------------------------------


def test_serve_forever_cli_prints_ca_and_cleans_up_on_ctrl_c(repo_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from secure_import.publish.servecli import serve_forever_cli; "
        "serve_forever_cli(Path(sys.argv[1]), 0, temporary_ca=True); "
        "print('clean exit', flush=True)"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(repo_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = lines[0].split(" at ", 1)[1].strip()
        ca_path = Path(lines[1].removeprefix("CA certificate:").strip())
        assert url.startswith("https://127.0.0.1:")
        assert f'ca_bundle="{ca_path}"' in lines[2]
        assert ca_path.parent.stat().st_mode & 0o777 == 0o700
        verify = ssl.create_default_context(cafile=str(ca_path))
        assert httpx.get(url + "mod.py", verify=verify, timeout=5).content == MODULE_BYTES
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "clean exit" in out
    assert err == ""
    assert not ca_path.parent.exists()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_serve_removes_its_ca_directory_on_every_stop_signal(repo_dir: Path, signame: str) -> None:
    """``secure-import serve --temporary-ca`` stopped by a service manager
    (SIGTERM), a closed terminal (SIGHUP) or Ctrl-C (SIGINT) leaves no
    ``ca.pem`` behind."""
    import json as _json
    import signal as _signal
    import subprocess as _subprocess
    import sys as _sys

    proc = _subprocess.Popen(
        [
            _sys.executable,
            "-m",
            "secure_import",
            "--json",
            "serve",
            str(repo_dir),
            "--port",
            "0",
            "--temporary-ca",
        ],
        stdout=_subprocess.PIPE,
        stderr=_subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        facts = _json.loads(line)
        ca_path = Path(facts["ca_bundle"])
        assert ca_path.exists()
        proc.send_signal(getattr(_signal, signame))
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not ca_path.exists() and not ca_path.parent.exists()
