"""``secure-import serve`` as a user runs it: a kept CA, request logging, clean exits.

The development loop (issue 16): a ``ca_bundle`` saved in code or
configuration must survive a restart of the server; the CA key stays
private; every stop leaves no temporary file; ``serve -v`` shows each request
(method, path, status, bytes) with control characters escaped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from secure_import.publish.devca import CA_CERT_NAME, CA_KEY_NAME, load_or_create_ca
from secure_import.publish.devtls import issue_certificate, server_ssl_context
from secure_import.publish.scripted import AccessRecord, escape_log_text
from secure_import.publish.serve import RepoServer

from .clirunner import child_env

BODY = b"VALUE = 42\n" * 50


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "mod.py").write_bytes(BODY)
    return root


class Serve:
    """A ``secure-import --json serve`` child process."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "secure_import", "--json", "serve", *args, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(tmp),
            cwd=tmp,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"serve did not start: {err}")
        self.facts = json.loads(line)

    def stop(self, signame: str = "SIGTERM") -> str:
        """Stop it; return its stderr."""
        self.proc.send_signal(getattr(signal, signame))
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        return err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.kill()


def _start(tmp: Path, started: list[Serve], *args: str) -> Serve:
    s = Serve(tmp, *args)
    started.append(s)
    return s


def test_a_saved_ca_bundle_keeps_working_after_serve_restarts(
    tmp_path: Path, site: Path, serve: list[Serve]
) -> None:
    ca_dir = tmp_path / "ca"
    first = _start(tmp_path, serve, str(site), "--ca-dir", str(ca_dir))
    assert first.facts["ca"] == "created"
    bundle = Path(first.facts["ca_bundle"])
    assert bundle == ca_dir / CA_CERT_NAME
    saved = tmp_path / "saved-ca.pem"  # what a user pasted into configuration
    shutil.copyfile(bundle, saved)
    ctx = ssl.create_default_context(cafile=str(saved))
    assert httpx.get(first.facts["url"] + "mod.py", verify=ctx, timeout=5).content == BODY
    first.stop("SIGTERM")
    # The CA is private and nothing temporary was left in its directory.
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    assert (ca_dir / CA_KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in ca_dir.iterdir()) == sorted([".lock", CA_CERT_NAME, CA_KEY_NAME])

    second = _start(tmp_path, serve, str(site), "--ca-dir", str(ca_dir))
    assert second.facts["ca"] == "reused"
    assert second.facts["ca_bundle"] == str(bundle)
    assert bundle.read_bytes() == saved.read_bytes()
    ctx = ssl.create_default_context(cafile=str(saved))
    assert httpx.get(second.facts["url"] + "mod.py", verify=ctx, timeout=5).content == BODY
    second.stop("SIGINT")


def test_the_default_ca_directory_is_the_users_data_directory(
    tmp_path: Path, site: Path, serve: list[Serve]
) -> None:
    """Without ``--ca-dir`` the CA is kept in the data directory
    (``SECURE_IMPORT_SERVE_CA_DIR`` here, so the test stays in ``tmp_path``)."""
    expected = Path(os.environ["SECURE_IMPORT_SERVE_CA_DIR"])
    s = _start(tmp_path, serve, str(site))
    assert Path(s.facts["ca_bundle"]) == expected / CA_CERT_NAME
    s.stop()
    assert (expected / CA_KEY_NAME).exists()


def test_a_ca_key_readable_by_others_is_refused_not_used(tmp_path: Path, site: Path) -> None:
    ca_dir = tmp_path / "ca"
    load_or_create_ca(ca_dir)
    key = ca_dir / CA_KEY_NAME
    before = key.read_bytes()
    key.chmod(0o644)
    ran = subprocess.run(
        [sys.executable, "-m", "secure_import", "serve", str(site), "--ca-dir", str(ca_dir)],
        capture_output=True,
        text=True,
        env=child_env(tmp_path),
        timeout=30,
    )
    assert ran.returncode == 1
    assert "readable or writable by others" in ran.stderr and str(key) in ran.stderr
    assert key.read_bytes() == before  # neither used nor silently replaced


def test_an_expiring_or_broken_kept_ca_is_replaced_and_said_so(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    first = load_or_create_ca(ca_dir)
    (ca_dir / CA_CERT_NAME).write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    again = load_or_create_ca(ca_dir)
    assert again.action == "renewed" and again.reason is not None
    assert again.ca.cert_pem != first.ca.cert_pem
    assert load_or_create_ca(ca_dir).action == "reused"


def test_the_kept_ca_cannot_certify_any_other_host(tmp_path: Path, site: Path) -> None:
    """The CA is name-constrained to loopback: a certificate it signs for
    another name as well is rejected by the client, even for 127.0.0.1."""
    kept = load_or_create_ca(tmp_path / "ca")
    ctx = ssl.create_default_context(cafile=str(kept.cert_path))
    good = server_ssl_context(issue_certificate(kept.ca, ("127.0.0.1", "localhost")))
    with RepoServer(site, ssl_context=good) as server:
        assert httpx.get(server.url + "mod.py", verify=ctx, timeout=5).content == BODY
    bad = server_ssl_context(issue_certificate(kept.ca, ("127.0.0.1", "pypi.org")))
    with RepoServer(site, ssl_context=bad) as server:
        with pytest.raises(httpx.ConnectError) as info:
            httpx.get(server.url + "mod.py", verify=ctx, timeout=5)
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def _raw_request(url: str, ctx: ssl.SSLContext, line: bytes) -> bytes:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data


def test_serve_v_logs_each_request_with_control_characters_escaped(
    tmp_path: Path, site: Path, serve: list[Serve]
) -> None:
    s = _start(tmp_path, serve, str(site), "--temporary-ca", "-v")
    ctx = ssl.create_default_context(cafile=s.facts["ca_bundle"])
    with httpx.Client(verify=ctx, timeout=5) as client:
        assert client.get(s.facts["url"] + "mod.py").status_code == 200
        assert client.get(s.facts["url"] + "missing.py").status_code == 404
        assert client.head(s.facts["url"] + "mod.py").status_code == 200
    _raw_request(s.facts["url"], ctx, b"GET /evil\x1b[31m\x08\x7fx HTTP/1.1")
    _raw_request(s.facts["url"], ctx, b"GET /a\rforged 200 HTTP/1.1")
    err = s.stop()
    lines = err.splitlines()
    assert len(lines) == 5, err
    assert lines[0].endswith(f" GET /mod.py 200 {len(BODY)}")
    assert lines[1].endswith(" GET /missing.py 404 14")  # "404 Not Found\n"
    assert lines[2].endswith(" HEAD /mod.py 200 0")
    assert "\x1b" not in err and "\r" not in err
    assert lines[3].endswith(" GET /evil\\x1b[31m\\x08\\x7fx 404 14")
    # A request line that does not parse: logged whole, escaped, as a 400.
    assert " - GET /a\\x0dforged 200 HTTP/1.1 400 " in lines[4]


def test_without_v_serve_prints_no_request_lines(
    tmp_path: Path, site: Path, serve: list[Serve]
) -> None:
    s = _start(tmp_path, serve, str(site), "--temporary-ca")
    ctx = ssl.create_default_context(cafile=s.facts["ca_bundle"])
    assert httpx.get(s.facts["url"] + "mod.py", verify=ctx, timeout=5).status_code == 200
    assert s.stop() == ""


def test_access_records_count_status_and_body_bytes(tmp_path: Path, site: Path) -> None:
    kept = load_or_create_ca(tmp_path / "ca")
    ctx = ssl.create_default_context(cafile=str(kept.cert_path))
    seen: list[AccessRecord] = []
    server_ctx = server_ssl_context(issue_certificate(kept.ca))
    with RepoServer(site, ssl_context=server_ctx, access_log=seen.append) as server:
        with httpx.Client(verify=ctx, timeout=5) as client:
            etag = client.get(server.url + "mod.py").headers["etag"]
            assert (
                client.get(server.url + "mod.py", headers={"If-None-Match": etag}).status_code
                == 304
            )
            client.post(server.url + "mod.py")
        # The handler records a request after its response is sent: wait for it.
        deadline = time.monotonic() + 10
        while len(server.access) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        records = server.access
    assert [(r.method, r.path, r.status, r.bytes) for r in records] == [
        ("GET", "/mod.py", 200, len(BODY)),
        ("GET", "/mod.py", 304, 0),
        ("POST", "/mod.py", 405, len(b"405 Method Not Allowed\n")),
    ]
    assert seen == records
    assert all(r.protocol == "HTTP/1.1" for r in records)
    assert AccessRecord.parse(records[0].line()) == AccessRecord(
        "HTTP/1.1", "GET", "/mod.py", 200, len(BODY)
    )


def test_log_text_escaping_cannot_forge_a_line() -> None:
    assert escape_log_text("/a\nb\tc\\x0a\x7f\u202e") == "/a\\x0ab\\x09c\\\\x0a\\x7f\\u202e"


def test_serve_failing_to_start_leaves_no_temporary_file(tmp_path: Path, site: Path) -> None:
    """The exception path: the port is taken, serve exits 1 with a clear
    error, and its temporary CA directory is gone too."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        ran = subprocess.run(
            [
                sys.executable,
                "-m",
                "secure_import",
                "serve",
                str(site),
                "--temporary-ca",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=child_env(tmp_path, TMPDIR=str(tmpdir)),
            timeout=30,
        )
    assert ran.returncode == 1 and "cannot listen on 127.0.0.1" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert list(tmpdir.iterdir()) == []
