"""The Sigstore adapter: the real sigstore-python verifier, offline, against a pinned root.

Bundles come from the test Sigstore instance (tests/sigstore_instance.py); the
verifier is sigstore-python's own.  Every test runs under a socket guard: any
attempt to open a network connection fails the test.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_import.errors import ConfigError, SigstoreBundleError
from secure_import.store.trustedroot import load_trusted_root_file, shipped_trusted_root
from secure_import.verify.identity import Identity, mismatches
from secure_import.verify.keyless import (
    MAX_BUNDLE_BYTES,
    PinnedTrustedRoot,
    load_trusted_root,
    verify_bundle,
)

from .sigstore_instance import TestSigstore, github_claims

pytest.importorskip("sigstore")

ARTIFACT = b'{"manifest": "the exact bytes a CI workflow signed"}\n'


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Socket guard: verification must not open a single connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network use during offline verification: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="module")
def instance() -> TestSigstore:
    return TestSigstore("adapter-tests")


@pytest.fixture(scope="module")
def root(instance: TestSigstore) -> PinnedTrustedRoot:
    return load_trusted_root(instance.trusted_root_json(), source="test root")


def _edit(bundle: bytes, change: object) -> bytes:
    document = json.loads(bundle)
    change(document)  # type: ignore[operator]
    return json.dumps(document).encode()


def test_minted_bundle_verifies_and_names_the_signer(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    bundle = instance.sign(ARTIFACT, github_claims(ref="refs/tags/v1.2.0"))
    verified = verify_bundle(ARTIFACT, bundle, trusted_root=root, url="https://x.test/m")
    assert verified.signer.source_repository_uri == "https://github.com/octo-org/octo-lib"
    assert verified.signer.source_repository_ref == "refs/tags/v1.2.0"
    assert verified.log_index >= 5
    pin = Identity(issuer="github-actions", repository="octo-org/octo-lib", ref="refs/tags/v*")
    assert mismatches(pin, verified.signer) == []


def test_bundle_for_different_bytes_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    bundle = instance.sign(ARTIFACT, github_claims())
    with pytest.raises(SigstoreBundleError, match="digest mismatch") as info:
        verify_bundle(ARTIFACT + b" ", bundle, trusted_root=root, url="https://x.test/m")
    assert info.value.code == "bad-sigstore-bundle"
    assert info.value.url == "https://x.test/m"


def test_signature_over_other_bytes_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    """The digest names the artifact but the key signed something else."""
    bundle = instance.sign(ARTIFACT, github_claims(), sign_bytes=b"something else")
    with pytest.raises(SigstoreBundleError, match="Signature is invalid"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_certificate_expired_before_the_log_integrated_the_entry_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    """A stolen ephemeral key used after its 10-minute certificate expired."""
    start = datetime.now(UTC) - timedelta(hours=2)
    bundle = instance.sign(
        ARTIFACT,
        github_claims(),
        not_before=start,
        integrated_at=start + timedelta(minutes=30),
    )
    with pytest.raises(SigstoreBundleError, match="certificate"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_log_time_before_the_certificate_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    bundle = instance.sign(
        ARTIFACT, github_claims(), not_before=start, integrated_at=start - timedelta(minutes=5)
    )
    with pytest.raises(SigstoreBundleError):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_expired_certificate_inside_its_log_time_verifies(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    """Short-lived certificates are judged at the log's time, not now."""
    start = datetime.now(UTC) - timedelta(days=30)
    bundle = instance.sign(ARTIFACT, github_claims(), not_before=start)
    assert verify_bundle(ARTIFACT, bundle, trusted_root=root).signer.issuer is not None


def test_certificate_without_sct_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    bundle = instance.sign(ARTIFACT, github_claims(), sct=False)
    with pytest.raises(SigstoreBundleError, match="SCT"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_another_instance_is_not_trusted(root: PinnedTrustedRoot) -> None:
    """A whole Sigstore deployment the attacker runs: valid, but not pinned."""
    rogue = TestSigstore("rogue")
    bundle = rogue.sign(ARTIFACT, github_claims())
    with pytest.raises(SigstoreBundleError, match="certificate chain"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


@pytest.mark.parametrize(
    "tamper",
    [
        "signature",
        "certificate",
        "inclusion-proof",
        "checkpoint",
        "promise",
        "body",
        "integrated-time",
    ],
)
def test_altered_bundle_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot, tamper: str
) -> None:
    bundle = instance.sign(ARTIFACT, github_claims())

    def flip(b64: str) -> str:
        raw = bytearray(base64.b64decode(b64))
        raw[len(raw) // 2] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    def change(doc: dict) -> None:  # type: ignore[type-arg]
        entry = doc["verificationMaterial"]["tlogEntries"][0]
        if tamper == "signature":
            doc["messageSignature"]["signature"] = flip(doc["messageSignature"]["signature"])
        elif tamper == "certificate":
            cert = doc["verificationMaterial"]["certificate"]
            cert["rawBytes"] = flip(cert["rawBytes"])
        elif tamper == "inclusion-proof":
            proof = entry["inclusionProof"]
            proof["hashes"][0] = flip(proof["hashes"][0])
        elif tamper == "checkpoint":
            checkpoint = entry["inclusionProof"]["checkpoint"]
            checkpoint["envelope"] = checkpoint["envelope"].replace("\n", "\n ", 1)
        elif tamper == "promise":
            promise = entry["inclusionPromise"]
            promise["signedEntryTimestamp"] = flip(promise["signedEntryTimestamp"])
        elif tamper == "body":
            entry["canonicalizedBody"] = flip(entry["canonicalizedBody"])
        elif tamper == "integrated-time":
            entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)

    with pytest.raises(SigstoreBundleError):
        verify_bundle(ARTIFACT, _edit(bundle, change), trusted_root=root)


@pytest.mark.parametrize(
    "bundle",
    [b"", b"not json", b"{}", b"[]", b'{"mediaType": "application/x-other"}', b"\xff\xfe"],
)
def test_malformed_bundle_is_a_bundle_error(root: PinnedTrustedRoot, bundle: bytes) -> None:
    with pytest.raises(SigstoreBundleError, match="malformed"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_oversized_bundle_is_refused_before_parsing(root: PinnedTrustedRoot) -> None:
    with pytest.raises(SigstoreBundleError, match="too large"):
        verify_bundle(ARTIFACT, b" " * (MAX_BUNDLE_BYTES + 1), trusted_root=root)


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}'],
)
def test_unusable_trusted_root_is_a_config_error(data: bytes) -> None:
    with pytest.raises(ConfigError, match="trusted root"):
        load_trusted_root(data, source="pinned.json")


def test_trusted_root_file_is_read_from_the_pinned_path(
    tmp_path: Path, instance: TestSigstore
) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(instance.trusted_root_json())
    pinned = load_trusted_root_file(path)
    assert pinned.source == str(path)
    bundle = instance.sign(ARTIFACT, github_claims())
    assert verify_bundle(ARTIFACT, bundle, trusted_root=pinned).signer.san is not None
    with pytest.raises(ConfigError, match="cannot read"):
        load_trusted_root_file(tmp_path / "absent.json")


def test_shipped_public_good_root_does_not_trust_the_test_instance(
    instance: TestSigstore,
) -> None:
    shipped = shipped_trusted_root()
    assert shipped.source.startswith("public-good")
    with pytest.raises(SigstoreBundleError):
        verify_bundle(ARTIFACT, instance.sign(ARTIFACT, github_claims()), trusted_root=shipped)


def test_importing_secure_import_does_not_import_sigstore() -> None:
    """The core install does not grow: sigstore loads only on the identity path."""
    code = (
        "import sys, secure_import, secure_import.verify.identity, secure_import.verify.keyless\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sigstore', 'sigstore_models', 'rekor_types', 'pydantic', 'requests', 'tuf'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extra_is_a_config_error_naming_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['sigstore'] = None\n"
        "from secure_import.errors import ConfigError\n"
        "from secure_import.verify.keyless import load_trusted_root\n"
        "try:\n"
        "    load_trusted_root(b'{}', source='x')\n"
        "except ConfigError as exc:\n"
        '    assert "secure-import[sigstore]" in str(exc), str(exc)\n'
        "    assert exc.check == 'sigstore-extra'\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sct_from_a_ct_log_outside_the_root_is_refused(
    instance: TestSigstore, root: PinnedTrustedRoot
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    bundle = instance.sign(
        ARTIFACT, github_claims(), ct_key=ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(SigstoreBundleError, match="SCT verify failed"):
        verify_bundle(ARTIFACT, bundle, trusted_root=root)


def test_trusted_root_swapped_in_sigstore_user_cache_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S6: an attacker who can write the user's sigstore cache plants a root.

    sigstore-python's own offline mode trusts the planted root (shown first,
    so the attack is real); the shipped root we use instead refuses the
    attacker's bundle, and the planted file is left as it was.
    """
    from sigstore.models import Bundle
    from sigstore.verify import Verifier, policy

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    attacker = TestSigstore("attacker")
    planted = (
        tmp_path
        / "cache/sigstore-python/tuf/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json"
    )
    planted.parent.mkdir(parents=True)
    planted.write_bytes(attacker.trusted_root_json())
    bundle = attacker.sign(ARTIFACT, github_claims())

    naive = Verifier.production(offline=True)
    naive.verify_artifact(ARTIFACT, Bundle.from_json(bundle), policy.UnsafeNoOp())

    with pytest.raises(SigstoreBundleError, match="certificate chain"):
        verify_bundle(ARTIFACT, bundle, trusted_root=shipped_trusted_root())
    assert planted.read_bytes() == attacker.trusted_root_json()
