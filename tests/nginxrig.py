"""A real nginx on 127.0.0.1 for tests and the benchmark (Debian ``nginx-light``).

Our own :class:`~secure_import.serve.RepoServer` computes strong ETags (the
sha256 of the body) and speaks HTTP/1.1 only.  Production repositories sit
behind ordinary web servers and CDNs, which behave differently: nginx derives
its ETag from the file's modification time and size, and offers HTTP/2.  The
tests that must describe a real server run against this one; the simulator
stays for what only it can do (tampering, drips, redirects).

:class:`NginxServer` writes a configuration into a private temporary
directory (TLS with a certificate from the test CA, HTTP/2 on, access log
with method, path, status, bytes and protocol), starts nginx in the
foreground on a free loopback port and stops it (SIGQUIT, then SIGKILL).
Nothing outside that directory is written: pid file, logs and nginx's
temporary directories all live inside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from secure_import.publish.scripted import AccessRecord

from .httpsrig import LOOPBACK_HOSTS, TLSServerFactory

__all__ = ["NGINX", "AccessRecord", "NginxServer", "nginx_available"]

#: Where Debian's nginx-light puts the binary.
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
_START_TIMEOUT = 10.0
#: One access-log line: protocol, method, path, status, body bytes (tab-separated),
#: the form of :meth:`AccessRecord.line` (our own server's records), so both
#: servers' traffic reads alike.
_LOG_FORMAT = "$server_protocol\\t$request_method\\t$request_uri\\t$status\\t$body_bytes_sent"


def nginx_available() -> bool:
    """Whether an nginx binary can be run here (tests are skipped otherwise)."""
    return os.path.exists(NGINX) and os.access(NGINX, os.X_OK)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxServer:
    """nginx serving ``root`` over HTTPS (HTTP/2 and HTTP/1.1) on 127.0.0.1."""

    def __init__(self, root: Path, workdir: Path, rig: TLSServerFactory) -> None:
        self.root = Path(root).resolve()
        self.workdir = Path(workdir)
        self.rig = rig
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    def start(self) -> None:
        """Write the configuration and start nginx; retry on a lost port race.

        Raises:
            RuntimeError: nginx did not come up (its error log is in the message).
        """
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        leaf = self.rig.ca.issue_cert(*LOOPBACK_HOSTS)
        cert = self.workdir / "cert.pem"
        key = self.workdir / "key.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        os.chmod(key, 0o600)
        last = ""
        for _ in range(5):
            self.port = _free_port()
            conf = self.workdir / "nginx.conf"
            conf.write_text(self._config(cert, key))
            self.error_log.write_text("")
            self._process = subprocess.Popen(
                [NGINX, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_listening():
                return
            self._kill()
            last = self.error_log.read_text(errors="replace")
            if "Address already in use" not in last:
                break
        raise RuntimeError(f"nginx did not start: {last.strip()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return True
            time.sleep(0.02)
        return False

    def _config(self, cert: Path, key: Path) -> str:
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp = self.workdir / "temp"
        temp.mkdir(exist_ok=True)
        return f"""{user}worker_processes 1;
daemon off;
pid {self.workdir / "nginx.pid"};
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ application/json json; text/x-python py; }}
    default_type application/octet-stream;
    log_format probe "{_LOG_FORMAT}";
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {self.root};
        access_log {self.access_log} probe;
        location / {{ try_files $uri =404; }}
    }}
}}
"""

    def stop(self) -> None:
        """Graceful stop (SIGQUIT), then SIGKILL after five seconds."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation ----------------------------------------------------------

    def requests(self) -> list[AccessRecord]:
        """Every request logged so far, oldest first.

        nginx writes a log line when the response is finished; a client that
        has read its whole answer may be a little ahead, so this waits briefly
        for the log to stop growing.
        """
        previous = -1
        for _ in range(20):
            size = self.access_log.stat().st_size if self.access_log.exists() else 0
            if size == previous:
                break
            previous = size
            time.sleep(0.02)
        if not self.access_log.exists():
            return []
        return [AccessRecord.parse(line) for line in self.access_log.read_text().splitlines()]

    def request_paths(self) -> list[str]:
        return [r.path for r in self.requests()]

    def clear_log(self) -> None:
        """Forget the logged requests (nginx keeps appending to the same file)."""
        self.requests()  # let pending lines land first
        with open(self.access_log, "r+b") as handle:
            handle.truncate(0)

    def client_context(self) -> ssl.SSLContext:
        return self.rig.client_context()
