"""Private repositories: a credential header only for its origin and never logged,
client certificates (mutual TLS), and the operating system's trust store."""

from __future__ import annotations

import importlib
import importlib.util
import ssl
from pathlib import Path

import pytest
import trustme

from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    ConfigError,
    HTTPStatusError,
    RedirectRefusedError,
    SecureImportError,
    TransportError,
)
from secure_import.hook.finder import get_finder
from secure_import.publish.serve import RepoServer, Response
from secure_import.settings import AuthSettings, RepositorySettings, Settings, build_repository
from secure_import.transport.https import AuthHeader, Fetcher, TransportOptions

from .conftest import Consumer, Publisher

TOKEN = "s3cr3t-t0ken-value-4f9a"


def _private_repo(consumer: Consumer, **kw: object) -> RepositorySettings:
    pub = consumer.publisher
    fields: dict[str, object] = {
        "name": "private",
        "url": pub.url,
        "keys": (pub.pub_path,),
        "modules": frozenset({"private_pkg"}),
        "ca_bundle": pub.rig.ca_pem_path,
        "auth": AuthSettings(env="PRIVATE_REPO_TOKEN"),
    }
    fields.update(kw)
    return RepositorySettings(**fields)  # type: ignore[arg-type]


def _settings(consumer: Consumer) -> Settings:
    p = consumer.paths
    return Settings(cache_dir=p.cache_dir, state_dir=p.state_dir, log_dir=p.log_dir)


@pytest.fixture
def private(publisher: Publisher, monkeypatch: pytest.MonkeyPatch) -> Publisher:
    """A publisher that answers 401 to any request without the bearer token."""
    publisher.write("private_pkg/__init__.py", "from . import part\nVALUE = part.X\n")
    publisher.write("private_pkg/part.py", "X = 'private'\n")
    publisher.write("private_pkg/extra.py", "Y = 1\n")
    publisher.publish()
    monkeypatch.setenv("PRIVATE_REPO_TOKEN", TOKEN)

    def guard(request):  # type: ignore[no-untyped-def]
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response(401, b"credentials required")
        return None

    publisher._hook = guard  # type: ignore[method-assign]
    publisher.server._hook = guard
    return publisher


def test_auth_header_is_sent_to_the_configured_origin_and_never_logged(
    private: Publisher, consumer: Consumer
) -> None:
    repo = build_repository(_private_repo(consumer), _settings(consumer))
    get_finder().add(repo)
    module = importlib.import_module("private_pkg")
    assert module.VALUE == "private"
    requests = private.server.requests
    assert requests and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in requests)
    log = consumer.paths.audit_log.read_text()
    assert '"event":"load"' in log
    assert TOKEN not in log
    assert TOKEN not in repr(repo.fetcher.transport)


def test_missing_credential_is_a_401_with_a_hint_and_no_secret(
    private: Publisher, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher = Fetcher(private.url, limits=Limits(), ca_bundle=private.rig.ca_pem_path)
    with pytest.raises(HTTPStatusError, match="needs credentials"):
        fetcher.get(private.url + MANIFEST_NAME, cap=1 << 20)
    monkeypatch.delenv("PRIVATE_REPO_TOKEN")
    with pytest.raises(ConfigError, match="PRIVATE_REPO_TOKEN") as info:
        build_repository(_private_repo(consumer), _settings(consumer))
    assert TOKEN not in str(info.value)


def test_redirect_to_another_origin_is_refused_and_the_other_origin_gets_nothing(
    private: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    other = RepoServer(private.out, ssl_context=private.rig.server_context())
    other.start()
    try:
        private.server._hook = lambda request: Response.redirect(other.url + MANIFEST_NAME)
        repo = build_repository(_private_repo(consumer), _settings(consumer))
        get_finder().add(repo)
        with pytest.raises(RedirectRefusedError) as info:
            importlib.import_module("private_pkg")
        assert other.requests == []
        assert TOKEN not in str(info.value)
        assert TOKEN not in consumer.paths.audit_log.read_text()
    finally:
        other.stop()


def test_the_credential_is_scrubbed_from_error_messages(private: Publisher) -> None:
    # A hostile server echoes the token into a redirect; the refusal quotes the URL.
    private.server._hook = lambda request: Response.redirect(
        f"http://127.0.0.1:1/{TOKEN}/{MANIFEST_NAME}"
    )
    fetcher = Fetcher(
        private.url,
        limits=Limits(),
        ca_bundle=private.rig.ca_pem_path,
        transport=TransportOptions(auth=AuthHeader.from_env("PRIVATE_REPO_TOKEN")),
    )
    with pytest.raises(RedirectRefusedError) as info:
        fetcher.get(private.url + MANIFEST_NAME, cap=1 << 20)
    assert TOKEN not in str(info.value)
    assert "***" in str(info.value)


def test_a_direct_request_off_the_origin_never_carries_the_credential(
    private: Publisher,
) -> None:
    other = RepoServer(private.out, ssl_context=private.rig.server_context())
    other.start()
    try:
        fetcher = Fetcher(
            private.url,
            limits=Limits(),
            ca_bundle=private.rig.ca_pem_path,
            transport=TransportOptions(auth=AuthHeader("X-Token", TOKEN)),
        )
        with pytest.raises(RedirectRefusedError):
            fetcher.get(other.url + MANIFEST_NAME, cap=1 << 20)
        assert other.requests == []
    finally:
        other.stop()


def test_credential_from_a_file_with_a_custom_header(publisher: Publisher, tmp_path: Path) -> None:
    publisher.write("anything.py", "")
    publisher.publish()
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    auth = AuthHeader.from_file(secret, header="PRIVATE-TOKEN", scheme=None)
    fetcher = Fetcher(
        publisher.url,
        limits=Limits(),
        ca_bundle=publisher.rig.ca_pem_path,
        transport=TransportOptions(auth=auth),
    )
    fetcher.get(publisher.url + MANIFEST_NAME, cap=1 << 20)
    assert publisher.server.requests[-1].headers["private-token"] == TOKEN
    assert TOKEN not in repr(auth) and TOKEN not in str(auth)


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "", "caf\u00e9"])
def test_header_injection_and_bad_values_are_refused(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuthHeader("Authorization", value)
    assert "X-Evil" not in str(info.value)


def test_reserved_headers_cannot_carry_credentials() -> None:
    with pytest.raises(ConfigError, match="transport policy"):
        AuthHeader("Host", TOKEN)


# --- mutual TLS -------------------------------------------------------------------------


@pytest.fixture
def mtls(publisher: Publisher, tmp_path: Path) -> tuple[RepoServer, Path]:
    """A second server for the publisher's files that requires a client certificate."""
    publisher.write("mtls_pkg/__init__.py", "OK = True\n")
    publisher.publish()
    client_ca = trustme.CA()
    ctx = publisher.rig.server_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(ctx)
    client = client_ca.issue_cert("client.example")
    combined = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(combined))
    server = RepoServer(publisher.out, ssl_context=ctx)
    server.start()
    yield server, combined
    server.stop()


def test_mtls_server_refuses_a_client_without_a_certificate(
    publisher: Publisher, mtls: tuple[RepoServer, Path]
) -> None:
    server, _ = mtls
    fetcher = Fetcher(server.url, limits=Limits(), ca_bundle=publisher.rig.ca_pem_path)
    with pytest.raises(TransportError):
        fetcher.get(server.url + MANIFEST_NAME, cap=1 << 20)


def test_mtls_import_with_a_client_certificate(
    publisher: Publisher, consumer: Consumer, mtls: tuple[RepoServer, Path]
) -> None:
    server, combined = mtls
    repo = build_repository(
        _private_repo(
            consumer,
            url=server.url,
            auth=None,
            client_cert=combined,
            modules=frozenset({"mtls_pkg"}),
        ),
        _settings(consumer),
    )
    get_finder().add(repo)
    assert importlib.import_module("mtls_pkg").OK is True
    assert server.requests


def test_unreadable_client_certificate_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client certificate"):
        Fetcher(
            "https://example.org/",
            limits=Limits(),
            transport=TransportOptions(client_cert=tmp_path / "missing.pem"),
        )


# --- the system trust store ---------------------------------------------------------------


def test_truststore_option(publisher: Publisher) -> None:
    publisher.write("anything.py", "")
    publisher.publish()
    options = TransportOptions(use_truststore=True)
    if importlib.util.find_spec("truststore") is None:
        with pytest.raises(ConfigError, match="truststore"):
            Fetcher(publisher.url, limits=Limits(), transport=options)
        return
    # Installed: the OS store is used, and it does not know the test CA.
    fetcher = Fetcher(publisher.url, limits=Limits(), transport=options)
    with pytest.raises(SecureImportError):
        fetcher.get(publisher.url + MANIFEST_NAME, cap=1 << 20)


def test_truststore_and_ca_bundle_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        Fetcher(
            "https://example.org/",
            limits=Limits(),
            ca_bundle=tmp_path / "ca.pem",
            transport=TransportOptions(use_truststore=True),
        )
