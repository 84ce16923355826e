"""TLS fixtures for tests: a trustme CA and the bad servers threat T4 lists.

The test suite's CA comes from trustme, an implementation independent of
``secure_import.publish.devtls``, so a bug in our own certificate code cannot make the
tests agree with it.  Each helper returns a *server-side* ``ssl.SSLContext``
to hand to ``RepoServer(ssl_context=...)``; clients trust only
``TLSServerFactory.ca_pem_path`` (via :meth:`TLSServerFactory.client_context`).

- :meth:`TLSServerFactory.server_context` - a good certificate for loopback;
- :func:`wrong_host_context` - signed by the trusted CA, but for ``example.invalid``;
- :func:`expired_context` - signed by the trusted CA, for loopback, expired yesterday;
- :func:`self_signed_context` - for loopback, but signed by nobody the client trusts.
"""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LOOPBACK_HOSTS",
    "TLSServerFactory",
    "expired_context",
    "make_rig",
    "self_signed_context",
    "wrong_host_context",
]

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")


def _new_server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class TLSServerFactory:
    """A trustme CA plus its certificate on disk, minting server contexts on demand."""

    def __init__(self, ca: trustme.CA, ca_pem_path: Path) -> None:
        self.ca = ca
        self.ca_pem_path = ca_pem_path

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate in PEM form (what a client trusts)."""
        return bytes(self.ca.cert_pem.bytes())

    def server_context(self, hosts: Sequence[str] = LOOPBACK_HOSTS) -> ssl.SSLContext:
        """A server context with a fresh leaf for ``hosts`` signed by this CA."""
        ctx = _new_server_context()
        self.ca.issue_cert(*hosts).configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA (for httpx ``verify=``)."""
        return ssl.create_default_context(cafile=str(self.ca_pem_path))


def make_rig(tmp_path: Path) -> TLSServerFactory:
    """Create a fresh CA and write its certificate to ``tmp_path/ca.pem``."""
    ca = trustme.CA()
    ca_pem_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem_path))
    return TLSServerFactory(ca, ca_pem_path)


def wrong_host_context(factory: TLSServerFactory) -> ssl.SSLContext:
    """Trusted CA, valid dates, but the certificate names only ``example.invalid``."""
    return factory.server_context(hosts=("example.invalid",))


def expired_context(factory: TLSServerFactory) -> ssl.SSLContext:
    """Trusted CA and right host, but the certificate expired a day ago."""
    now = datetime.now(UTC)
    ctx = _new_server_context()
    leaf = factory.ca.issue_cert(
        *LOOPBACK_HOSTS,
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
    )
    leaf.configure_cert(ctx)
    return ctx


def self_signed_context(hosts: Sequence[str] = LOOPBACK_HOSTS) -> ssl.SSLContext:
    """Right host and dates, but the certificate signs itself (no CA the client trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ctx = _new_server_context()
    with tempfile.TemporaryDirectory(prefix="httpsrig-") as tmp:
        cert_file = Path(tmp) / "cert.pem"
        key_file = Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
