"""A throwaway certificate authority for development and demos on loopback.

``secure-import serve`` and the demos need an HTTPS server on 127.0.0.1 that a
client can verify *without* turning verification off (threat T4: we never offer
an "insecure" switch, not even for development).  This module mints a fresh CA
and one server certificate signed by it, entirely in memory; the caller hands
the CA certificate to the client as its trust bundle (``ca_bundle=``).

Properties, each chosen so that a strict verifier accepts the chain and nothing
else can reuse it:

- a new ECDSA P-256 key pair for the CA and for the leaf on every call of
  :func:`make_dev_certificates`; nothing is cached or written to a
  well-known place (``secure-import serve`` keeps its CA in a private
  directory instead, :mod:`.devca`, and mints a new leaf per start);
- the CA is ``BasicConstraints(ca=True, path_length=0)`` with ``keyCertSign``
  only, so it can sign leaves but no intermediate CA;
- the leaf names exactly the requested hosts in its subjectAltName (IP
  addresses as ``IPAddress``, names as ``DNSName``), is ``ca=False`` and is
  restricted to ``serverAuth``;
- both certificates are short-lived (two days by default) and back-dated by one
  hour so that small clock differences do not make them "not yet valid".

This is development tooling: the private keys live in process memory and, for
:func:`server_ssl_context`, briefly in a private temporary directory.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secure_import.errors import ConfigError

__all__ = [
    "DevCA",
    "DevCertificates",
    "issue_certificate",
    "make_dev_ca",
    "make_dev_certificates",
    "server_ssl_context",
]

#: Default subjectAltNames of the development server certificate.
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
#: Default lifetime of the development CA and certificate.
DEFAULT_VALIDITY = timedelta(days=2)
#: How far ``not_valid_before`` is back-dated, to tolerate clock skew.
_BACKDATE = timedelta(hours=1)
#: Upper bound on the lifetime: throwaway certificates must not outlive a demo by much.
_MAX_VALIDITY = timedelta(days=366)


@dataclass(frozen=True)
class DevCertificates:
    """PEM material for a development HTTPS server.

    ``ca_pem`` is what a client trusts; ``cert_chain_pem`` and ``key_pem`` are
    what the server presents.  ``cert_chain_pem`` holds only the leaf: the
    client already has the CA, so sending it again adds nothing.
    """

    ca_pem: bytes
    cert_chain_pem: bytes
    key_pem: bytes


def _san_entry(host: str) -> x509.GeneralName:
    """Turn one host string into a subjectAltName entry.

    Raises :class:`ConfigError` for names a certificate cannot carry (empty,
    non-ASCII, whitespace), rather than letting cryptography's ``ValueError``
    escape.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or not host.isascii() or any(ch.isspace() or ch in "/\\@:" for ch in host):
        raise ConfigError(
            f"cannot put host {host!r} in a certificate", check="dev-certificate-host"
        )
    return x509.DNSName(host.lower())


@dataclass(frozen=True)
class DevCA:
    """A development CA: its certificate and private key, in memory and as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _check_validity(valid_for: timedelta) -> None:
    if valid_for <= timedelta(0) or valid_for > _MAX_VALIDITY:
        raise ConfigError(
            "development certificate lifetime out of range",
            check="dev-certificate-validity",
            expected=f"> 0 and <= {_MAX_VALIDITY}",
            got=valid_for,
        )


def _host_list(hosts: Sequence[str]) -> tuple[str, ...]:
    if isinstance(hosts, str):
        # A bare string is a Sequence[str] of characters; that is never meant.
        hosts = (hosts,)
    if not hosts:
        raise ConfigError("a development certificate needs at least one host")
    return tuple(hosts)


def _name_constraint(host: str) -> x509.GeneralName:
    """The subtree one host permits: exactly that address, or that name."""
    entry = _san_entry(host)
    if isinstance(entry, x509.IPAddress):
        address = ipaddress.ip_address(host)
        return x509.IPAddress(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))
    return entry


def make_dev_ca(
    *, valid_for: timedelta = DEFAULT_VALIDITY, constrain_to: Sequence[str] | None = None
) -> DevCA:
    """A fresh development CA (new ECDSA P-256 key).

    ``constrain_to``: hosts the CA may ever certify (an X.509 name
    constraint, critical): a CA kept on disk (``serve --ca-dir``) and
    perhaps added to a trust store can then never vouch for another name,
    even if its key leaks.

    Raises:
        ConfigError: ``valid_for`` out of range, or a host that cannot be
            put in a certificate.
    """
    _check_validity(valid_for)
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secure_import development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "secure_import throwaway dev CA"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if constrain_to is not None:
        permitted = [_name_constraint(h) for h in _host_list(constrain_to)]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
    return DevCA(builder.sign(key, hashes.SHA256()), key)


def issue_certificate(
    ca: DevCA, hosts: Sequence[str] = DEFAULT_HOSTS, *, valid_for: timedelta = DEFAULT_VALIDITY
) -> DevCertificates:
    """A server certificate for ``hosts`` (new key) signed by ``ca``, never
    outliving it.

    Raises:
        ConfigError: as :func:`make_dev_certificates`.
    """
    hosts = _host_list(hosts)
    _check_validity(valid_for)
    sans = [_san_entry(h) for h in hosts]
    now = datetime.now(UTC)
    not_after = min(now + valid_for, ca.cert.not_valid_after_utc)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secure_import development"),
            # The CN is informational only; verifiers match the subjectAltName.
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
        ]
    )
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(ca.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return DevCertificates(
        ca_pem=ca.cert_pem,
        cert_chain_pem=leaf_cert.public_bytes(serialization.Encoding.PEM),
        key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def make_dev_certificates(
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    valid_for: timedelta = DEFAULT_VALIDITY,
) -> DevCertificates:
    """Mint a fresh CA and a server certificate for ``hosts`` signed by it.

    Every call creates new keys, so certificates from one run never verify a
    server from another.

    Raises:
        ConfigError: ``hosts`` is empty or holds a name that cannot be put in a
            certificate, or ``valid_for`` is not positive or longer than a year.
    """
    hosts = _host_list(hosts)
    for host in hosts:
        _san_entry(host)
    return issue_certificate(make_dev_ca(valid_for=valid_for), hosts, valid_for=valid_for)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` exclusively with mode 0600 and write ``data`` to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def server_ssl_context(certs: DevCertificates) -> ssl.SSLContext:
    """Build a server-side TLS context (TLS 1.2 or newer) presenting ``certs``.

    :meth:`ssl.SSLContext.load_cert_chain` only reads files, so the key is
    written to a private (0700) temporary directory for the duration of the
    call and the directory is removed before returning, whether loading
    succeeded or not.

    Raises:
        ConfigError: the PEM material does not load (for example a key that
            does not match the certificate).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No renegotiation or compression; both are off by default in modern
    # OpenSSL but say so explicitly.
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    with tempfile.TemporaryDirectory(prefix="secure-import-devtls-") as tmp:
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o700)
        cert_file = tmp_path / "cert.pem"
        key_file = tmp_path / "key.pem"
        _write_private(cert_file, certs.cert_chain_pem)
        _write_private(key_file, certs.key_pem)
        try:
            ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"development certificate and key do not load: {exc}",
                check="dev-certificate-load",
            ) from exc
    return ctx
