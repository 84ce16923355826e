"""Pinned Sigstore identities and their matching against certificate claims (pure code).

Certificates come from the test Sigstore instance (tests/sigstore_instance.py),
so the claims are read from real DER the way Fulcio writes them.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from secure_import.errors import ConfigError, FormatError
from secure_import.verify.identity import (
    GITHUB_ACTIONS_ISSUER,
    Identity,
    SignerIdentity,
    identity_from_mapping,
    matching,
    mismatches,
    signer_from_certificate,
)

from .sigstore_instance import Claims, TestSigstore, github_claims


@pytest.fixture(scope="module")
def instance() -> TestSigstore:
    return TestSigstore("identity-tests")


def _signer(instance: TestSigstore, claims: Claims) -> SignerIdentity:
    _, cert = instance.issue(claims)
    return signer_from_certificate(cert)


RELEASE = Identity(
    issuer="github-actions",
    repository="octo-org/octo-lib",
    workflow=".github/workflows/release.yml",
    ref="refs/tags/v*",
)


def test_pin_expands_alias_and_shorthand_to_exact_uris() -> None:
    assert RELEASE.issuer == GITHUB_ACTIONS_ISSUER
    assert RELEASE.repository == "https://github.com/octo-org/octo-lib"
    assert RELEASE.workflow == "https://github.com/octo-org/octo-lib/.github/workflows/release.yml"
    assert RELEASE.describe() == (
        "issuer=https://token.actions.githubusercontent.com "
        "repository=https://github.com/octo-org/octo-lib "
        "workflow=https://github.com/octo-org/octo-lib/.github/workflows/release.yml "
        "ref=refs/tags/v*"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"issuer": GITHUB_ACTIONS_ISSUER}, "an issuer alone would accept anybody"),
        ({"issuer": "http://issuer.example", "identity": "a@b.example"}, "https://"),
        ({"issuer": "", "identity": "a@b.example"}, "non-empty"),
        ({"issuer": "https://idp.example", "repository": "owner/repo"}, "OWNER/REPO"),
        ({"issuer": "github-actions", "repository": "a/b/c"}, "OWNER/REPO"),
        (
            {"issuer": "github-actions", "repository": "o/r", "workflow": "x.yml@refs/tags/v1"},
            "@ref",
        ),
        ({"issuer": "github-actions", "identity": "https://x", "workflow": "w.yml"}, "repository"),
        ({"issuer": "github-actions", "repository": "o/r", "ref": "v*"}, "full git ref"),
        (
            {"issuer": "github-actions", "repository": "o/r", "ref": "refs/tags/v[0-9]"},
            "only wildcard",
        ),
        ({"issuer": "github-actions", "repository": "o/r\n"}, "control characters"),
        ({"issuer": "github-actions", "repository": " o/r"}, "surrounding spaces"),
    ],
)
def test_bad_pins_are_refused_at_configuration(kwargs: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Identity(**kwargs)
    assert fragment in str(info.value)
    assert info.value.code == "config-error"


def test_pin_from_configuration_table_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown keys") as info:
        identity_from_mapping(
            {"issuer": "github-actions", "repository": "o/r", "branch": "main"}, source="cfg"
        )
    assert "branch" in str(info.value)
    with pytest.raises(ConfigError, match="needs an issuer"):
        identity_from_mapping({"repository": "o/r"}, source="cfg")
    with pytest.raises(ConfigError):
        identity_from_mapping({"issuer": "github-actions", "repository": 7}, source="cfg")
    pin = identity_from_mapping(
        {"issuer": "github-actions", "repository": "o/r", "ref": "refs/heads/main"}, source="cfg"
    )
    assert pin.as_dict() == {
        "issuer": GITHUB_ACTIONS_ISSUER,
        "repository": "https://github.com/o/r",
        "ref": "refs/heads/main",
    }


def test_claims_are_read_from_the_certificate_extensions(instance: TestSigstore) -> None:
    signer = _signer(instance, github_claims(environment="pypi"))
    assert signer.issuer == GITHUB_ACTIONS_ISSUER
    assert signer.san == (
        "https://github.com/octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.0.0"
    )
    assert signer.source_repository_uri == "https://github.com/octo-org/octo-lib"
    assert signer.source_repository_ref == "refs/tags/v1.0.0"
    assert signer.workflow == "https://github.com/octo-org/octo-lib/.github/workflows/release.yml"
    assert signer.deployment_environment == "pypi"
    assert "environment=pypi" in signer.describe()


def test_matching_workflow_identity_at_a_release_tag(instance: TestSigstore) -> None:
    signer = _signer(instance, github_claims(ref="refs/tags/v2.3.1"))
    assert mismatches(RELEASE, signer) == []
    assert matching((RELEASE,), signer) == (RELEASE,)


def test_identity_from_another_repository_is_named_in_the_mismatch(instance: TestSigstore) -> None:
    """S1 (M3 for identities): a workflow of another repository (a fork, a typo-squat) signed."""
    signer = _signer(instance, github_claims(repository="evil-org/octo-lib"))
    assert mismatches(RELEASE, signer) == [
        "repository: pinned https://github.com/octo-org/octo-lib, "
        "signed https://github.com/evil-org/octo-lib",
        "workflow: pinned https://github.com/octo-org/octo-lib/.github/workflows/release.yml, "
        "signed https://github.com/evil-org/octo-lib/.github/workflows/release.yml",
    ]
    assert matching((RELEASE,), signer) == ()


def test_another_workflow_of_the_same_repository_does_not_match(instance: TestSigstore) -> None:
    """A test or PR workflow of the pinned repository cannot sign releases."""
    signer = _signer(instance, github_claims(workflow=".github/workflows/ci.yml"))
    assert mismatches(RELEASE, signer) == [
        "workflow: pinned https://github.com/octo-org/octo-lib/.github/workflows/release.yml, "
        "signed https://github.com/octo-org/octo-lib/.github/workflows/ci.yml"
    ]


def test_branch_build_does_not_match_a_tag_pattern(instance: TestSigstore) -> None:
    signer = _signer(instance, github_claims(ref="refs/heads/v1-feature"))
    assert mismatches(RELEASE, signer) == ["ref: pinned refs/tags/v*, signed refs/heads/v1-feature"]


@pytest.mark.parametrize(
    ("pattern", "ref", "ok"),
    [
        ("refs/tags/v*", "refs/tags/v1.0.0", True),
        ("refs/tags/v*", "refs/tags/v", True),
        ("refs/tags/v*", "refs/tags/release-v1", False),
        ("refs/tags/v*", "refs/heads/refs/tags/v1", False),
        ("refs/tags/v*.*", "refs/tags/v1.2", True),
        ("refs/tags/v*.*", "refs/tags/v12", False),
        ("refs/heads/main", "refs/heads/main", True),
        ("refs/heads/main", "refs/heads/main2", False),
        ("refs/heads/main", "refs/heads/mai", False),
        ("refs/tags/v1.0", "refs/tags/v1x0", False),  # '.' is literal
    ],
)
def test_ref_pattern_is_anchored_and_only_star_is_special(pattern: str, ref: str, ok: bool) -> None:
    pin = Identity(issuer="github-actions", repository="o/r", ref=pattern)
    assert pin.ref_matches(ref) is ok


def test_environment_pin_requires_the_certified_environment(instance: TestSigstore) -> None:
    pin = Identity(issuer="github-actions", repository="octo-org/octo-lib", environment="release")
    assert mismatches(pin, _signer(instance, github_claims(environment="release"))) == []
    assert mismatches(pin, _signer(instance, github_claims(environment="staging"))) == [
        "environment: pinned release, signed staging"
    ]
    assert mismatches(pin, _signer(instance, github_claims())) == [
        "environment: pinned release, signed (absent)"
    ]


def test_reusable_workflow_is_pinned_by_its_own_uri(instance: TestSigstore) -> None:
    """The build signer is the reusable workflow; the repository is the caller's."""
    claims = github_claims(
        workflow=".github/workflows/publish.yml",
        signer_repository="octo-org/shared-workflows",
        signer_ref="refs/tags/v3",
    )
    signer = _signer(instance, claims)
    pin = Identity(
        issuer="github-actions",
        repository="octo-org/octo-lib",
        workflow="https://github.com/octo-org/shared-workflows/.github/workflows/publish.yml",
    )
    assert mismatches(pin, signer) == []
    path_pin = Identity(
        issuer="github-actions",
        repository="octo-org/octo-lib",
        workflow=".github/workflows/publish.yml",
    )
    assert mismatches(path_pin, signer) != []


def test_person_identity_by_email_and_issuer(instance: TestSigstore) -> None:
    claims = Claims(issuer="https://accounts.example", san="alice@example.org")
    signer = _signer(instance, claims)
    alice = Identity(issuer="https://accounts.example", identity="alice@example.org")
    assert mismatches(alice, signer) == []
    mallory = Identity(issuer="https://accounts.example", identity="mallory@example.org")
    assert mismatches(mallory, signer) == [
        "identity: pinned mallory@example.org, signed alice@example.org"
    ]
    # Same address, another issuer (an IdP the attacker controls).
    other_idp = Identity(issuer="https://evil-idp.example", identity="alice@example.org")
    assert mismatches(other_idp, signer) == [
        "issuer: pinned https://evil-idp.example, signed https://accounts.example"
    ]


def test_a_claim_the_certificate_lacks_never_matches(instance: TestSigstore) -> None:
    """A certificate without CI extensions cannot satisfy a repository pin."""
    claims = Claims(issuer=GITHUB_ACTIONS_ISSUER, san="https://github.com/octo-org/octo-lib")
    signer = _signer(instance, claims)
    assert mismatches(RELEASE, signer) == [
        "repository: pinned https://github.com/octo-org/octo-lib, signed (absent)",
        "workflow: pinned https://github.com/octo-org/octo-lib/.github/workflows/release.yml, "
        "signed (absent)",
        "ref: pinned refs/tags/v*, signed (absent)",
    ]


def test_issuer_falls_back_to_the_v1_extension_only_when_v2_is_absent(
    instance: TestSigstore,
) -> None:
    only_v1 = Claims(issuer="https://idp.example", san="a@b.example", v2_issuer=False)
    assert _signer(instance, only_v1).issuer == "https://idp.example"
    none = Claims(issuer="https://idp.example", san="a@b.example", v1_issuer=False, v2_issuer=False)
    assert _signer(instance, none).issuer is None
    pin = Identity(issuer="https://idp.example", identity="a@b.example")
    assert mismatches(pin, _signer(instance, none)) == [
        "issuer: pinned https://idp.example, signed (absent)"
    ]


def test_disagreeing_v1_and_v2_issuers_are_refused(instance: TestSigstore) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ObjectIdentifier

    _, cert = instance.issue(
        Claims(issuer="https://good.example", san="a@b.example", v1_issuer=False)
    )
    builder = instance._leaf_builder(
        Claims(issuer="https://good.example", san="a@b.example", v1_issuer=False),
        cert.public_key(),  # type: ignore[arg-type]
        cert.not_valid_before_utc,
        cert.not_valid_after_utc - cert.not_valid_before_utc,
        cert.serial_number,
    ).add_extension(
        x509.UnrecognizedExtension(
            ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), b"https://evil.example"
        ),
        critical=False,
    )
    forged = builder.sign(instance.intermediate_key, hashes.SHA384())
    with pytest.raises(FormatError, match="two issuer claims disagree"):
        signer_from_certificate(forged)


def test_malformed_der_claim_is_a_format_error(instance: TestSigstore) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ObjectIdentifier

    _, cert = instance.issue(Claims(issuer="https://idp.example", san="a@b.example"))
    for raw in (b"https://not-der", b"\x0c\x05abc", b"\x0c\x81\x03abc", b"\x0c\x02\xff\xfe"):
        builder = instance._leaf_builder(
            Claims(issuer="https://idp.example", san="a@b.example"),
            cert.public_key(),  # type: ignore[arg-type]
            cert.not_valid_before_utc,
            cert.not_valid_after_utc - cert.not_valid_before_utc,
            cert.serial_number,
        ).add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.12"), raw),
            critical=False,
        )
        with pytest.raises(FormatError):
            signer_from_certificate(builder.sign(instance.intermediate_key, hashes.SHA384()))
