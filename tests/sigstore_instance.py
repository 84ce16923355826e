"""A test Sigstore instance: a Fulcio-like CA, a CT log and a transparency log, offline.

The real sigstore-python verifier checks what this module mints; nothing here
verifies anything.  It is written from the public formats (RFC 5280 for the
certificates, RFC 6962 for the signed certificate timestamp and the Merkle
tree, the C2SP signed-note format for the checkpoint, the Sigstore bundle and
trusted-root JSON), independently of sigstore-python's own code, so a bug in
either side shows up as a refusal instead of an agreement.

The pieces, each with a key that :meth:`TestSigstore.trusted_root_json` lists:

- a root CA and an intermediate CA (ECDSA P-384), as Fulcio has;
- short-lived leaf certificates (ECDSA P-256, 10 minutes by default) that
  carry the OIDC identity as Fulcio puts it: the subject alternative name
  (the workflow URI or an e-mail address) and the Sigstore extensions under
  1.3.6.1.4.1.57264.1 (issuer, source repository, ref, build config, ...);
- a CT log key: every leaf embeds one precertificate SCT signed over the
  leaf's TBSCertificate minus the SCT list and the issuer's key hash, as a
  real CT log signs a precertificate (the leaf is issued once without the SCT
  extension to obtain those TBS bytes, then again with it appended);
- a transparency log (Rekor v1 shape): an append-only list of
  ``hashedrekord`` 0.0.1 entries, an RFC 6962 Merkle tree over them, a signed
  checkpoint (signed note) and a signed entry timestamp (inclusion promise).

``sign`` returns a v0.3 bundle (JSON bytes) whose message signature covers
the artifact; keyword arguments produce the bad variants the attack tests
need (a certificate that expired before the log integrated the entry, no
SCT, a log time outside the certificate, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "GITHUB_ISSUER",
    "Claims",
    "TestSigstore",
    "github_claims",
]

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

_FULCIO = "1.3.6.1.4.1.57264.1."
_SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

#: Claim name -> Fulcio extension number (values DER UTF8String), from
#: Fulcio's docs/oid-info.md.
V2_EXTENSIONS = {
    "issuer": 8,
    "build_signer_uri": 9,
    "build_signer_digest": 10,
    "runner_environment": 11,
    "source_repository_uri": 12,
    "source_repository_digest": 13,
    "source_repository_ref": 14,
    "source_repository_identifier": 15,
    "source_repository_owner_uri": 16,
    "source_repository_owner_identifier": 17,
    "build_config_uri": 18,
    "build_config_digest": 19,
    "build_trigger": 20,
    "run_invocation_uri": 21,
    "source_repository_visibility_at_signing": 22,
    "deployment_environment": 23,
}


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x0c" + _der_length(len(raw)) + raw


def _der_octets(raw: bytes) -> bytes:
    return b"\x04" + _der_length(len(raw)) + raw


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Claims:
    """What the CA certifies: the SAN (URI or e-mail) and the Fulcio extensions.

    ``v1_issuer`` also writes the deprecated raw-string issuer extension (.1),
    as Fulcio still does; ``extensions`` maps :data:`V2_EXTENSIONS` names to values.
    """

    issuer: str
    san: str
    extensions: dict[str, str] = field(default_factory=dict)
    v1_issuer: bool = True
    v2_issuer: bool = True
    #: Deprecated raw-string GitHub extensions Fulcio still writes (.2 trigger,
    #: .3 sha, .4 workflow name, .5 repository, .6 ref); ``sigstore verify
    #: github`` reads these.
    legacy: dict[int, str] = field(default_factory=dict)


def github_claims(
    repository: str = "octo-org/octo-lib",
    workflow: str = ".github/workflows/release.yml",
    ref: str = "refs/tags/v1.0.0",
    *,
    environment: str | None = None,
    sha: str = "a" * 40,
    signer_repository: str | None = None,
    signer_ref: str | None = None,
    trigger: str = "push",
) -> Claims:
    """The claims Fulcio certifies for a GitHub Actions run of ``workflow`` at ``ref``.

    ``signer_repository``/``signer_ref`` model a reusable workflow in another
    repository doing the signing (the SAN and build signer URI then name it).
    """
    repo_uri = f"https://github.com/{repository}"
    config_uri = f"{repo_uri}/{workflow}@{ref}"
    signer_uri = (
        config_uri
        if signer_repository is None
        else f"https://github.com/{signer_repository}/{workflow}@{signer_ref or ref}"
    )
    extensions = {
        "build_signer_uri": signer_uri,
        "build_signer_digest": sha,
        "runner_environment": "github-hosted",
        "source_repository_uri": repo_uri,
        "source_repository_digest": sha,
        "source_repository_ref": ref,
        "source_repository_identifier": "123456",
        "source_repository_owner_uri": f"https://github.com/{repository.split('/')[0]}",
        "source_repository_owner_identifier": "654321",
        "build_config_uri": config_uri,
        "build_config_digest": sha,
        "build_trigger": trigger,
        "run_invocation_uri": f"{repo_uri}/actions/runs/1/attempts/1",
        "source_repository_visibility_at_signing": "public",
    }
    if environment is not None:
        extensions["deployment_environment"] = environment
    legacy = {2: trigger, 3: sha, 4: "release", 5: repository, 6: ref}
    return Claims(issuer=GITHUB_ISSUER, san=signer_uri, extensions=extensions, legacy=legacy)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of ``leaves`` (raw entries)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 audit path of leaf ``m``, from the leaf's sibling upwards."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


class TestSigstore:
    """One test Sigstore deployment: keys, a CA chain, a CT log and a transparency log."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "test-sigstore", *, epoch: datetime | None = None) -> None:
        self.name = name
        self.epoch = (epoch or datetime.now(UTC) - timedelta(days=365)).replace(microsecond=0)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(_spki(self.rekor_key.public_key())).digest()
        self.ct_log_id = hashlib.sha256(_spki(self.ct_key.public_key())).digest()
        self.origin = f"{name}-rekor.invalid - 1"
        # A few unrelated entries first, so inclusion proofs are not trivial.
        self.leaves: list[bytes] = [f"unrelated entry {i}".encode() for i in range(5)]
        not_after = self.epoch + timedelta(days=3650)
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root"),
            ]
        )
        self.root_cert = self._ca_cert(
            root_name, root_name, self.root_key.public_key(), self.root_key, not_after, None
        )
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name} intermediate"),
            ]
        )
        self.intermediate_cert = self._ca_cert(
            inter_name,
            root_name,
            self.intermediate_key.public_key(),
            self.root_key,
            not_after,
            0,
        )

    # --- the CA -----------------------------------------------------------

    def _ca_cert(
        self,
        subject: x509.Name,
        issuer: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        signing_key: ec.EllipticCurvePrivateKey,
        not_after: datetime,
        path_length: int | None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.epoch - timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if subject != issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
        return builder.sign(signing_key, hashes.SHA384())

    def _leaf_builder(
        self,
        claims: Claims,
        public_key: ec.EllipticCurvePublicKey,
        not_before: datetime,
        lifetime: timedelta,
        serial: int,
    ) -> x509.CertificateBuilder:
        san: x509.GeneralName
        if "@" in claims.san and "://" not in claims.san:
            san = x509.RFC822Name(claims.san)
        else:
            san = x509.UniformResourceIdentifier(claims.san)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
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
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        )
        if claims.v1_issuer:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier(_FULCIO + "1"), claims.issuer.encode("utf-8")
                ),
                critical=False,
            )
        if claims.v2_issuer:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier(_FULCIO + "8"), _der_utf8(claims.issuer)
                ),
                critical=False,
            )
        for number, value in claims.legacy.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier(_FULCIO + str(number)), value.encode("utf-8")
                ),
                critical=False,
            )
        for claim, value in claims.extensions.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    ObjectIdentifier(_FULCIO + str(V2_EXTENSIONS[claim])), _der_utf8(value)
                ),
                critical=False,
            )
        return builder

    def _sct(self, tbs_precert: bytes, timestamp: datetime) -> bytes:
        """An RFC 6962 v1 SCT for a precertificate entry, signed by the CT log key."""
        issuer_key_hash = hashlib.sha256(_spki(self.intermediate_key.public_key())).digest()
        millis = int(timestamp.timestamp() * 1000)
        signed = (
            struct.pack("!BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs_precert).to_bytes(3, "big")
            + tbs_precert
            + struct.pack("!H", 0)
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            struct.pack("!B", 0)
            + self.ct_log_id
            + struct.pack("!QH", millis, 0)
            + struct.pack("!BBH", 4, 3, len(signature))
            + signature
        )

    def issue(
        self,
        claims: Claims,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        sct: bool = True,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A fresh signing key and its short-lived certificate for ``claims``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.certify(
            key.public_key(),
            claims,
            not_before=not_before,
            lifetime=lifetime,
            sct=sct,
            ct_key=ct_key,
        )
        return key, cert

    def certify(
        self,
        public_key: ec.EllipticCurvePublicKey,
        claims: Claims,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        sct: bool = True,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> x509.Certificate:
        """A short-lived certificate binding ``public_key`` to ``claims`` (what Fulcio does)."""
        start = (not_before or datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
        serial = x509.random_serial_number()
        builder = self._leaf_builder(claims, public_key, start, lifetime, serial)
        if sct:
            # Issue once without the SCT list: its TBS bytes are exactly what a
            # verifier rebuilds from the final certificate by removing the list.
            precert = builder.sign(self.intermediate_key, hashes.SHA384())
            saved = self.ct_key
            if ct_key is not None:
                self.ct_key = ct_key
            try:
                one = self._sct(precert.tbs_certificate_bytes, start)
            finally:
                self.ct_key = saved
            sct_list = struct.pack("!H", len(one) + 2) + struct.pack("!H", len(one)) + one
            builder = builder.add_extension(
                x509.UnrecognizedExtension(_SCT_LIST_OID, _der_octets(sct_list)), critical=False
            )
        return builder.sign(self.intermediate_key, hashes.SHA384())

    # --- the transparency log --------------------------------------------------

    def _checkpoint(self, size: int, root: bytes) -> str:
        note = f"{self.origin}\n{size}\n{_b64(root)}\n"
        signature = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return note + f"\n\u2014 {self.origin.split(' ')[0]} {_b64(self.log_id[:4] + signature)}\n"

    def log_entry(self, body: bytes, integrated_time: int) -> dict[str, object]:
        """Append ``body`` and return its bundle ``tlogEntries`` item (proof, checkpoint, SET)."""
        index = len(self.leaves)
        self.leaves.append(body)
        # A few later entries too: the proof then has left and right siblings.
        self.leaves.extend(f"later entry {index}-{i}".encode() for i in range(2))
        size = len(self.leaves)
        root = _mth(self.leaves)
        promise = json.dumps(
            {
                "body": _b64(body),
                "integratedTime": integrated_time,
                "logID": self.log_id.hex(),
                "logIndex": index,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        set_signature = self.rekor_key.sign(promise, ec.ECDSA(hashes.SHA256()))
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_signature)},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in _path(index, self.leaves[:size])],
                "checkpoint": {"envelope": self._checkpoint(size, root)},
            },
            "canonicalizedBody": _b64(body),
        }

    # --- signing -------------------------------------------------------------

    def sign(
        self,
        artifact: bytes,
        claims: Claims,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        integrated_at: datetime | None = None,
        sct: bool = True,
        sign_bytes: bytes | None = None,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """A v0.3 Sigstore bundle (JSON bytes) for ``artifact`` signed as ``claims``.

        ``integrated_at`` is the log's integration time (default: one second
        after the certificate's start); ``sign_bytes`` signs other bytes than
        the artifact whose digest the bundle and the log entry name; ``ct_key``
        signs the SCT with another CT log key than the trusted root lists.
        """
        key, cert = self.issue(
            claims, not_before=not_before, lifetime=lifetime, sct=sct, ct_key=ct_key
        )
        digest = hashlib.sha256(artifact).digest()
        signed = artifact if sign_bytes is None else sign_bytes
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        body = json.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                    "signature": {
                        "content": _b64(signature),
                        "publicKey": {"content": _b64(cert_pem)},
                    },
                },
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        when = integrated_at or cert.not_valid_before_utc + timedelta(seconds=1)
        entry = self.log_entry(body, int(when.timestamp()))
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            },
        }
        return json.dumps(bundle, indent=2).encode()

    # --- the trusted root ------------------------------------------------------

    def trusted_root(self) -> dict[str, object]:
        """The instance's trusted root as the Sigstore trusted-root JSON object."""
        start = {"start": _rfc3339(self.epoch - timedelta(days=1))}

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, object]:
            spki = _spki(key.public_key())
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": start,
                },
                "logId": {"keyId": _b64(hashlib.sha256(spki).digest())},
            }

        der = serialization.Encoding.DER
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, f"https://{self.name}-rekor.invalid")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name} CA"},
                    "uri": f"https://{self.name}-fulcio.invalid",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.intermediate_cert.public_bytes(der))},
                            {"rawBytes": _b64(self.root_cert.public_bytes(der))},
                        ]
                    },
                    "validFor": start,
                }
            ],
            "ctlogs": [log(self.ct_key, f"https://{self.name}-ct.invalid")],
            "timestampAuthorities": [],
        }

    def trusted_root_json(self) -> bytes:
        """:meth:`trusted_root` as JSON bytes (what a user pins)."""
        return json.dumps(self.trusted_root(), indent=2).encode()
