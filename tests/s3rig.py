"""Fixtures for object-storage tests: an S3-compatible emulator over TLS on 127.0.0.1.

``s3_emulator`` (one per test session) starts ``tests/s3emulator.py`` (moto's
server, an emulator of the S3 REST API) in a child process with a certificate
from its own trustme CA, and stops it at the end.  ``s3_bucket`` creates a
fresh, private bucket for one test and points the AWS credential chain at
throwaway test credentials: the developer's own ``~/.aws`` files, profiles and
the instance-metadata service are never consulted.

Registered for every test module through ``pytest_plugins`` in conftest.py.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

HERE = Path(__file__).parent
_START_TIMEOUT = 60.0

#: Throwaway credentials the emulator accepts (it checks none); tests assert
#: they never appear in any output.
TEST_ACCESS_KEY = "AKIASECUREIMPORTTEST"
TEST_SECRET_KEY = "s3cr3t-never-printed-" + "x" * 20


@dataclass
class S3Emulator:
    """A running emulator: its https endpoint and the CA that signed its certificate."""

    endpoint: str
    ca_pem_path: Path
    log_path: Path

    def admin(self) -> httpx.Client:
        """A client for bucket administration (the emulator does not check signatures)."""
        verify = ssl.create_default_context(cafile=str(self.ca_pem_path))
        return httpx.Client(verify=verify, base_url=self.endpoint, timeout=30)

    def create_bucket(self, name: str) -> None:
        with self.admin() as client:
            client.put(f"/{name}").raise_for_status()

    def make_public(self, bucket: str) -> None:
        """Allow anonymous GetObject: the bucket's HTTPS endpoint serves the site."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
        with self.admin() as client:
            client.put(
                f"/{bucket}", params={"policy": ""}, content=json.dumps(policy)
            ).raise_for_status()

    def https_url(self, bucket: str, prefix: str = "") -> str:
        """The path-style HTTPS URL of ``bucket/prefix/`` (what a CDN would front)."""
        return f"{self.endpoint}/{bucket}/{prefix.strip('/') + '/' if prefix.strip('/') else ''}"


@dataclass
class S3Bucket:
    emulator: S3Emulator
    name: str

    def url(self, prefix: str = "") -> str:
        """``s3://bucket/prefix/`` (``s3://bucket/`` for the whole bucket)."""
        prefix = prefix.strip("/")
        return f"s3://{self.name}/{prefix + '/' if prefix else ''}"

    def https_url(self, prefix: str = "") -> str:
        return self.emulator.https_url(self.name, prefix)


def _start(tmp: Path) -> tuple[subprocess.Popen[str], S3Emulator]:
    ca = trustme.CA()
    ca_pem = tmp / "s3-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp / "s3-cert.pem", tmp / "s3-key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    log = tmp / "s3-emulator.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "s3emulator.py"), str(cert), str(key)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    assert proc.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(_START_TIMEOUT)
    if not line or not line[0].startswith("port="):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the S3 emulator did not start; see {log}: {log.read_text()[-2000:]}")
    port = int(line[0].strip().split("=", 1)[1])
    return proc, S3Emulator(f"https://127.0.0.1:{port}", ca_pem, log)


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    pytest.importorskip("obstore", reason="the s3 extra is not installed")
    proc, emulator = _start(tmp_path_factory.mktemp("s3-emulator"))
    try:
        yield emulator
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials in the environment; every other source of AWS settings cut off."""
    for variable in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT",
        "AWS_ALLOW_HTTP",
        "AWS_ALLOW_INVALID_CERTIFICATES",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_DEFAULT_REGION",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_bucket(s3_emulator: S3Emulator, s3_credentials: None) -> S3Bucket:
    """A fresh private bucket on the emulator, with test credentials in the environment."""
    name = f"si-test-{secrets.token_hex(6)}"
    s3_emulator.create_bucket(name)
    return S3Bucket(s3_emulator, name)
