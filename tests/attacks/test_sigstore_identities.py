"""Publishers pinned by Sigstore identity, end to end through the finder over real HTTPS.

The publisher signs keylessly with bundles minted by the test Sigstore
instance (tests/sigstore_instance.py); the consumer pins the instance's
trusted root and an identity, and the real sigstore-python verifier checks
every bundle.  Attacks (S1-S6 in SECURITY.md, M3's identity form) end with
the four post-conditions of :meth:`Scenario.refused`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_import import SigstoreIdentity
from secure_import.config import MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME
from secure_import.errors import (
    ExpiredError,
    IdentityMismatchError,
    RollbackError,
    SigstoreBundleError,
    ThresholdError,
)

from ..sigstore_instance import Claims, TestSigstore, github_claims
from .conftest import Scenario, import_victim

pytest.importorskip("sigstore")

RELEASE = SigstoreIdentity(
    issuer="github-actions",
    repository="octo-org/octo-lib",
    workflow=".github/workflows/release.yml",
    ref="refs/tags/v*",
)


@pytest.fixture
def instance() -> TestSigstore:
    return TestSigstore("e2e")


@pytest.fixture
def trusted_root(instance: TestSigstore, tmp_path: Path) -> Path:
    path = tmp_path / "pinned" / "trusted_root.json"
    path.parent.mkdir()
    path.write_bytes(instance.trusted_root_json())
    return path


def signer(
    instance: TestSigstore, claims: Claims | None = None, **kw: object
) -> Callable[[bytes], bytes]:
    """The publisher's keyless signing step: a bundle over the manifest payload."""

    def sign(payload: bytes) -> bytes:
        return instance.sign(payload, claims or github_claims(ref="refs/tags/v1.0.0"), **kw)  # type: ignore[arg-type]

    return sign


def identity_repo(scenario: Scenario, trusted_root: Path, **kwargs: object) -> object:
    kwargs.setdefault("keys", [])
    kwargs.setdefault("publishers", [RELEASE])
    return scenario.warm(sigstore_trusted_root=trusted_root, **kwargs)


def test_repository_signed_by_ci_identity_imports_and_audits_the_signer(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    out = scenario.publisher.out
    assert (out / SIGSTORE_BUNDLE_NAME).is_file()
    assert (out / MANIFEST_PAYLOAD_NAME).is_file()
    identity_repo(scenario, trusted_root)
    victim = import_victim()
    assert victim.OK is True  # type: ignore[attr-defined]
    loads = [r for r in scenario.consumer.audit() if r["event"] == "load"]
    assert loads, "no load record"
    for record in loads:
        assert record["key_id"].startswith(
            "sigstore:issuer=https://token.actions.githubusercontent.com"
        )
        assert "repository=https://github.com/octo-org/octo-lib" in record["key_id"]
        assert "ref=refs/tags/v1.0.0" in record["key_id"]
    assert f"/{SIGSTORE_BUNDLE_NAME}" in scenario.publisher.request_paths()
    assert f"/{MANIFEST_PAYLOAD_NAME}" not in scenario.publisher.request_paths()


def test_next_process_reuses_the_memo_without_the_bundle(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    before = scenario.publisher.request_paths().count(f"/{SIGSTORE_BUNDLE_NAME}")
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    importlib.import_module("good")
    assert scenario.publisher.request_paths().count(f"/{SIGSTORE_BUNDLE_NAME}") == before
    last = [r for r in scenario.consumer.audit() if r["event"] == "load"][-1]
    assert last["key_id"].startswith("sigstore:")


def test_mixed_threshold_needs_the_ci_identity_and_the_key(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """2 of {CI identity, Alice's key}: CI built it and a person approved it."""
    alice = scenario.publisher.private_key
    scenario.publish_baseline(private_keys=[alice], sigstore_sign=signer(instance))
    scenario.warm(
        keys=[scenario.publisher.pub_path],
        publishers=[RELEASE],
        sigstore_trusted_root=trusted_root,
        threshold=2,
    )
    record = [r for r in scenario.consumer.audit() if r["event"] == "load"][-1]
    signers = record["key_id"].split(",")
    assert any(s.startswith("sigstore:") for s in signers)
    assert any(len(s) == 64 and not s.startswith("sigstore:") for s in signers)


def test_mixed_threshold_refuses_the_key_alone(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """M4: the person signed, but no CI bundle: threshold not met, named."""
    alice = scenario.publisher.private_key
    scenario.publish_baseline(private_keys=[alice], sigstore_sign=signer(instance))
    scenario.warm(
        keys=[scenario.publisher.pub_path],
        publishers=[RELEASE],
        sigstore_trusted_root=trusted_root,
        threshold=2,
    )
    scenario.publisher.write("victim/part.py", scenario.evil().decode())
    scenario.publisher.publish(private_keys=[alice])  # no bundle this time
    scenario.consumer.new_process(
        keys=[scenario.publisher.pub_path],
        publishers=[RELEASE],
        sigstore_trusted_root=trusted_root,
        threshold=2,
    )
    before = scenario.consumer.snapshot()
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met", before=before)
    assert "publishes no Sigstore bundle" in str(exc)


def test_mixed_threshold_refuses_the_identity_alone(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """A compromised CI job cannot publish without the person's key."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    scenario.consumer.add(
        keys=[scenario.publisher.pub_path],
        publishers=[RELEASE],
        sigstore_trusted_root=trusted_root,
        threshold=2,
    )
    exc = scenario.refused(import_victim, ThresholdError, "threshold-not-met")
    assert "1 of the 2 required publishers" in str(exc)


@pytest.mark.parametrize(
    ("claims", "differs"),
    [
        pytest.param(
            github_claims(repository="evil-org/octo-lib", ref="refs/tags/v1.0.0"),
            "repository: pinned https://github.com/octo-org/octo-lib, "
            "signed https://github.com/evil-org/octo-lib",
            id="S1-another-repository",
        ),
        pytest.param(
            github_claims(workflow=".github/workflows/pr.yml", ref="refs/tags/v1.0.0"),
            "workflow: pinned https://github.com/octo-org/octo-lib/.github/workflows/release.yml,"
            " signed https://github.com/octo-org/octo-lib/.github/workflows/pr.yml",
            id="S2-another-workflow",
        ),
        pytest.param(
            github_claims(ref="refs/heads/main"),
            "ref: pinned refs/tags/v*, signed refs/heads/main",
            id="S3-branch-instead-of-tag",
        ),
    ],
)
def test_valid_bundle_by_an_unpinned_identity_is_refused_naming_both(
    scenario: Scenario,
    instance: TestSigstore,
    trusted_root: Path,
    claims: Claims,
    differs: str,
) -> None:
    """M3 for identities: a genuine Sigstore signature by the wrong workload."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    scenario.publisher.write("victim/part.py", scenario.evil().decode())
    scenario.publisher.publish(private_keys=[], sigstore_sign=signer(instance, claims))
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    exc = scenario.refused(import_victim, IdentityMismatchError, "identity-mismatch")
    text = str(exc)
    assert differs in text
    assert f"got: issuer=https://token.actions.githubusercontent.com identity={claims.san}" in text
    assert exc.url is not None and exc.url.endswith(SIGSTORE_BUNDLE_NAME)


def test_certificate_expired_outside_the_log_time_is_refused(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """S4: a stolen ephemeral key used after its certificate expired."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    start = datetime.now(UTC) - timedelta(hours=3)
    scenario.publisher.write("victim/part.py", scenario.evil().decode())
    scenario.publisher.publish(
        private_keys=[],
        sigstore_sign=signer(instance, not_before=start, integrated_at=start + timedelta(hours=1)),
    )
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    exc = scenario.refused(import_victim, SigstoreBundleError, "bad-sigstore-bundle")
    assert "valid" in str(exc)


def test_bundle_for_different_bytes_is_refused(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """S5: a new (attacker's) manifest served with the genuine bundle of the old one."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    genuine = (scenario.publisher.out / SIGSTORE_BUNDLE_NAME).read_bytes()
    scenario.publisher.write("victim/part.py", scenario.evil().decode())
    # The attacker's envelope carries no key signature; the bundle beside it
    # is the genuine one of version 1.
    scenario.publisher.publish(private_keys=[], sigstore_sign=lambda payload: genuine)
    assert (scenario.publisher.out / SIGSTORE_BUNDLE_NAME).read_bytes() == genuine
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    exc = scenario.refused(import_victim, SigstoreBundleError, "bad-sigstore-bundle")
    assert "digest mismatch" in str(exc)


def test_trusted_root_swapped_in_the_sigstore_user_cache_is_refused(
    scenario: Scenario,
    instance: TestSigstore,
    trusted_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S6: an attacker runs their own Sigstore instance and plants its root in
    sigstore-python's user cache; the pinned root decides, so the bundle fails."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    attacker = TestSigstore("attacker")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for base in ("xdg-cache", "xdg-data"):
        planted = tmp_path / base / "sigstore-python/tuf/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
        planted.mkdir(parents=True)
        (planted / "trusted_root.json").write_bytes(attacker.trusted_root_json())
    scenario.publisher.write("victim/part.py", scenario.evil().decode())
    scenario.publisher.publish(private_keys=[], sigstore_sign=signer(attacker))
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    exc = scenario.refused(import_victim, SigstoreBundleError, "bad-sigstore-bundle")
    assert "certificate chain" in str(exc)
    # The default (public-good root shipped with sigstore) ignores the cache too.
    scenario.consumer.new_process(keys=[], publishers=[RELEASE])
    scenario.refused(import_victim, SigstoreBundleError, "bad-sigstore-bundle")


def test_rollback_stays_ours_with_identities(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """M8: an older manifest, validly signed by the pinned identity, is refused."""
    scenario.publish_baseline(private_keys=[], sigstore_sign=signer(instance))
    scenario.publisher.write("good.py", "VALUE = 2\n")
    scenario.publisher.publish(private_keys=[], sigstore_sign=signer(instance))
    identity_repo(scenario, trusted_root)
    scenario.publisher.serve_snapshot(1)
    scenario.consumer.new_process(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    scenario.refused(import_victim, RollbackError, "rollback")


def test_expiry_stays_ours_with_identities(
    scenario: Scenario, instance: TestSigstore, trusted_root: Path
) -> None:
    """M10: a manifest past its expiry is refused although its bundle verifies."""
    scenario.publish_baseline(
        private_keys=[],
        sigstore_sign=signer(instance),
        now=datetime.now(UTC) - timedelta(days=10),
        expires_in=timedelta(days=1),
    )
    scenario.consumer.add(keys=[], publishers=[RELEASE], sigstore_trusted_root=trusted_root)
    scenario.refused(import_victim, ExpiredError, "expired")
