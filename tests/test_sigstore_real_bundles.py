"""Real Sigstore bundles from the wild, verified offline through the identity path.

The bundles are not in this repository: at test time the pinned sdist of
``pypi-attestations`` (Apache-2.0; its test assets include real bundles with
their artifacts) is downloaded with pip and checked against its sha256, like
acceptance/run.py does for its sdists.  The test is skipped, saying why, only
when the registry cannot be reached; a digest mismatch fails.

The trusted roots are the two that the installed sigstore-python wheel ships
(public-good production and staging), never sigstore's user cache.  Every
verification runs under a socket guard.

- ``pypi_attestation_models-0.0.4a2.tar.gz.sigstore``: a DSSE/in-toto bundle
  signed in production by GitHub Actions, workflow ``release.yml`` of
  ``trailofbits/pypi-attestation-models`` at tag ``v0.0.4a2``;
- ``rfc8785-0.1.2-py3-none-any.whl.sigstore``: signed in staging by a person
  (``william@yossarian.net`` through GitHub's OAuth issuer).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from secure_import.errors import SigstoreBundleError
from secure_import.store.trustedroot import shipped_trusted_root
from secure_import.verify.identity import Identity, matching, mismatches
from secure_import.verify.keyless import PinnedTrustedRoot, load_trusted_root, verify_bundle

pytest.importorskip("sigstore")

SDIST = "pypi_attestations-0.0.31.tar.gz"
SDIST_SHA256 = "5a2473aca7d7f65caf2c3a985691c5cf9264a97fa68c98fbae6e96320bcc7c9a"
ASSETS = "pypi_attestations-0.0.31/test/assets/"

PROD_ARTIFACT = "pypi_attestation_models-0.0.4a2.tar.gz"
STAGING_ARTIFACT = "rfc8785-0.1.2-py3-none-any.whl"

RELEASE_PIN = Identity(
    issuer="github-actions",
    repository="trailofbits/pypi-attestation-models",
    workflow=".github/workflows/release.yml",
    ref="refs/tags/v*",
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    downloads = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "pypi-attestations==0.0.31",
            "-d",
            str(downloads),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    sdist = downloads / SDIST
    if done.returncode != 0 or not sdist.is_file():
        pytest.skip(f"the registry is unreachable, cannot fetch {SDIST}: {done.stderr[-300:]}")
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == SDIST_SHA256
    wanted = {
        f"{ASSETS}{name}"
        for a in (PROD_ARTIFACT, STAGING_ARTIFACT)
        for name in (a, f"{a}.sigstore")
    }
    out: dict[str, bytes] = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.name in wanted:
                handle = archive.extractfile(member)
                assert handle is not None
                out[member.name.removeprefix(ASSETS)] = handle.read()
    assert len(out) == 4, sorted(out)
    return out


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, assets: dict[str, bytes]) -> Iterator[None]:
    """Socket guard (installed after the download): verification is offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network use during offline verification: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="module")
def production() -> PinnedTrustedRoot:
    return shipped_trusted_root()


@pytest.fixture(scope="module")
def staging() -> PinnedTrustedRoot:
    data = (
        resources.files("sigstore")
        / "_store"
        / "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"
        / "trusted_root.json"
    ).read_bytes()
    return load_trusted_root(data, source="staging (shipped with sigstore)")


def test_real_github_actions_bundle_verifies_with_its_identity(
    assets: dict[str, bytes], production: PinnedTrustedRoot
) -> None:
    verified = verify_bundle(
        assets[PROD_ARTIFACT], assets[f"{PROD_ARTIFACT}.sigstore"], trusted_root=production
    )
    signer = verified.signer
    assert signer.issuer == "https://token.actions.githubusercontent.com"
    assert signer.source_repository_uri == "https://github.com/trailofbits/pypi-attestation-models"
    assert signer.source_repository_ref == "refs/tags/v0.0.4a2"
    assert matching((RELEASE_PIN,), signer) == (RELEASE_PIN,)


@pytest.mark.parametrize(
    ("pin", "claim"),
    [
        (
            Identity(issuer="github-actions", repository="trailofbits/pypi-attestations"),
            "repository",
        ),
        (
            Identity(
                issuer="github-actions",
                repository="trailofbits/pypi-attestation-models",
                workflow=".github/workflows/tests.yml",
            ),
            "workflow",
        ),
        (
            Identity(
                issuer="github-actions",
                repository="trailofbits/pypi-attestation-models",
                ref="refs/heads/main",
            ),
            "ref",
        ),
        (
            Identity(
                issuer="https://gitlab.com",
                repository="https://github.com/trailofbits/pypi-attestation-models",
            ),
            "issuer",
        ),
    ],
)
def test_real_bundle_with_wrong_identity_pinned_is_named_mismatch(
    assets: dict[str, bytes], production: PinnedTrustedRoot, pin: Identity, claim: str
) -> None:
    signer = verify_bundle(
        assets[PROD_ARTIFACT], assets[f"{PROD_ARTIFACT}.sigstore"], trusted_root=production
    ).signer
    problems = mismatches(pin, signer)
    assert [p.split(":")[0] for p in problems] == [claim]
    assert matching((pin,), signer) == ()


def test_real_bundle_with_altered_artifact_is_refused(
    assets: dict[str, bytes], production: PinnedTrustedRoot
) -> None:
    altered = assets[PROD_ARTIFACT] + b"\0"
    with pytest.raises(SigstoreBundleError) as info:
        verify_bundle(altered, assets[f"{PROD_ARTIFACT}.sigstore"], trusted_root=production)
    assert info.value.check == "sigstore-subject"


def test_real_bundle_altered_is_refused(
    assets: dict[str, bytes], production: PinnedTrustedRoot
) -> None:
    document = json.loads(assets[f"{PROD_ARTIFACT}.sigstore"])
    envelope = document["dsseEnvelope"]
    sig = envelope["signatures"][0]["sig"]
    envelope["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(SigstoreBundleError):
        verify_bundle(assets[PROD_ARTIFACT], json.dumps(document).encode(), trusted_root=production)
    document = json.loads(assets[f"{PROD_ARTIFACT}.sigstore"])
    entry = document["verificationMaterial"]["tlogEntries"][0]
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)
    with pytest.raises(SigstoreBundleError):
        verify_bundle(assets[PROD_ARTIFACT], json.dumps(document).encode(), trusted_root=production)


def test_real_bundles_under_the_wrong_trusted_root_are_refused(
    assets: dict[str, bytes], production: PinnedTrustedRoot, staging: PinnedTrustedRoot
) -> None:
    with pytest.raises(SigstoreBundleError, match="certificate chain"):
        verify_bundle(
            assets[PROD_ARTIFACT], assets[f"{PROD_ARTIFACT}.sigstore"], trusted_root=staging
        )
    with pytest.raises(SigstoreBundleError, match="certificate chain"):
        verify_bundle(
            assets[STAGING_ARTIFACT],
            assets[f"{STAGING_ARTIFACT}.sigstore"],
            trusted_root=production,
        )


def test_real_person_identity_in_staging(
    assets: dict[str, bytes], staging: PinnedTrustedRoot
) -> None:
    signer = verify_bundle(
        assets[STAGING_ARTIFACT], assets[f"{STAGING_ARTIFACT}.sigstore"], trusted_root=staging
    ).signer
    person = Identity(issuer="https://github.com/login/oauth", identity="william@yossarian.net")
    assert mismatches(person, signer) == []
    impostor = Identity(issuer="https://github.com/login/oauth", identity="someone@else.example")
    assert mismatches(impostor, signer) == [
        "identity: pinned someone@else.example, signed william@yossarian.net"
    ]


def test_real_bundle_for_another_artifact_is_refused(
    assets: dict[str, bytes], staging: PinnedTrustedRoot, production: PinnedTrustedRoot
) -> None:
    with pytest.raises(SigstoreBundleError):
        verify_bundle(
            assets[PROD_ARTIFACT], assets[f"{STAGING_ARTIFACT}.sigstore"], trusted_root=staging
        )


def test_staging_root_path_is_a_package_file_not_the_user_cache(
    staging: PinnedTrustedRoot, production: PinnedTrustedRoot
) -> None:
    site = Path(str(resources.files("sigstore")))
    assert (site / "_store").is_dir()
    assert production.sha256 != staging.sha256
