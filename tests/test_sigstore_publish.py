"""The keyless publisher side, configuration files, ``secure-import verify``/``check``,
and the third-party check with the ``sigstore`` command-line tool alone.

Bundles are minted by the test Sigstore instance; ``sigstore verify`` runs as
its own process with a client trust configuration built from the instance's
trusted root (no network: the trust configuration replaces the TUF lookup).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import secure_import
from secure_import.config import MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME
from secure_import.errors import ConfigError

from .clirunner import child_env, run_cli, run_json
from .conftest import Publisher
from .sigstore_instance import TestSigstore, github_claims

pytest.importorskip("sigstore")

SAN = "https://github.com/octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.0.0"
ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture
def instance() -> TestSigstore:
    return TestSigstore("publish")


@pytest.fixture
def site(publisher: Publisher, instance: TestSigstore, tmp_path: Path) -> Path:
    """A site signed by the CI identity only; its trusted root pinned at tmp/trusted_root.json."""
    (tmp_path / "trusted_root.json").write_bytes(instance.trusted_root_json())
    publisher.write("octolib.py", "ANSWER = 42\n")
    publisher.publish(
        private_keys=[],
        sigstore_sign=lambda payload: instance.sign(payload, github_claims()),
    )
    return publisher.out


def trust_config(instance: TestSigstore, path: Path) -> Path:
    """A sigstore client trust configuration around the instance's trusted root."""
    signing = {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [
            {
                "url": "https://fulcio.invalid",
                "majorApiVersion": 1,
                "validFor": {"start": "2020-01-01T00:00:00Z"},
                "operator": "test",
            }
        ],
        "oidcUrls": [],
        "rekorTlogUrls": [
            {
                "url": "https://rekor.invalid",
                "majorApiVersion": 1,
                "validFor": {"start": "2020-01-01T00:00:00Z"},
                "operator": "test",
            }
        ],
        "tsaUrls": [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
    path.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                "trustedRoot": instance.trusted_root(),
                "signingConfig": signing,
            }
        )
    )
    return path


def sigstore_cli(tmp: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = child_env(tmp, XDG_CACHE_HOME=str(tmp / "xdg-cache"), XDG_DATA_HOME=str(tmp / "xdg-data"))
    return subprocess.run(
        [sys.executable, "-m", "sigstore", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_third_party_verifies_a_published_manifest_with_the_sigstore_cli(
    site: Path, instance: TestSigstore, tmp_path: Path
) -> None:
    """The documented command, against the instance's trust configuration."""
    config = trust_config(instance, tmp_path / "trust_config.json")
    ok = sigstore_cli(
        tmp_path,
        "--trust-config",
        config,
        "verify",
        "github",
        "--cert-identity",
        SAN,
        "--repository",
        "octo-org/octo-lib",
        "--ref",
        "refs/tags/v1.0.0",
        "--bundle",
        site / SIGSTORE_BUNDLE_NAME,
        site / MANIFEST_PAYLOAD_NAME,
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK:" in ok.stderr
    wrong = sigstore_cli(
        tmp_path,
        "--trust-config",
        config,
        "verify",
        "identity",
        "--cert-identity",
        SAN.replace("octo-org", "evil-org"),
        "--cert-oidc-issuer",
        ISSUER,
        "--bundle",
        site / SIGSTORE_BUNDLE_NAME,
        site / MANIFEST_PAYLOAD_NAME,
    )
    assert wrong.returncode != 0
    altered = tmp_path / "altered.json"
    altered.write_bytes((site / MANIFEST_PAYLOAD_NAME).read_bytes() + b" ")
    refused = sigstore_cli(
        tmp_path,
        "--trust-config",
        config,
        "verify",
        "identity",
        "--cert-identity",
        SAN,
        "--cert-oidc-issuer",
        ISSUER,
        "--bundle",
        site / SIGSTORE_BUNDLE_NAME,
        altered,
    )
    assert refused.returncode != 0


def test_payload_file_is_the_envelope_payload(site: Path) -> None:
    envelope = json.loads((site / "secure-import-manifest.json").read_bytes())
    import base64

    assert base64.b64decode(envelope["payload"]) == (site / MANIFEST_PAYLOAD_NAME).read_bytes()
    assert envelope["signatures"] == []


def test_republishing_without_sigstore_removes_the_stale_bundle(
    publisher: Publisher, site: Path
) -> None:
    assert (site / SIGSTORE_BUNDLE_NAME).exists()
    publisher.write("octolib.py", "ANSWER = 43\n")
    publisher.publish()
    assert not (site / SIGSTORE_BUNDLE_NAME).exists()


def _identity_args(repository: str = "octo-org/octo-lib") -> list[str]:
    return [
        "--identity-issuer",
        "github-actions",
        "--identity-repository",
        repository,
        "--identity-workflow",
        ".github/workflows/release.yml",
        "--identity-ref",
        "refs/tags/v*",
    ]


def test_verify_command_checks_the_identity(site: Path, tmp_path: Path) -> None:
    root = tmp_path / "trusted_root.json"
    report = run_json(tmp_path, "verify", site, *_identity_args(), "--sigstore-trusted-root", root)
    assert report["ok"] and report["files_checked"] == 1
    assert report["key_ids"][0].startswith(f"sigstore:issuer={ISSUER} identity={SAN}")
    refused = run_json(
        tmp_path,
        "verify",
        site,
        *_identity_args("evil-org/octo-lib"),
        "--sigstore-trusted-root",
        root,
        expect=1,
    )
    assert not refused["ok"]
    assert refused["failures"][0]["code"] == "identity-mismatch"
    assert "evil-org" in refused["failures"][0]["expected"]


def test_verify_command_catches_a_payload_file_that_differs(site: Path, tmp_path: Path) -> None:
    (site / MANIFEST_PAYLOAD_NAME).write_bytes(b'{"not": "the signed payload"}')
    report = run_json(
        tmp_path,
        "verify",
        site,
        *_identity_args(),
        "--sigstore-trusted-root",
        tmp_path / "trusted_root.json",
        expect=1,
    )
    assert [f["check"] for f in report["failures"]] == ["payload-file"]


def test_sign_sigstore_without_credentials_fails_before_writing(
    publisher: Publisher, instance: TestSigstore, tmp_path: Path
) -> None:
    publisher.write("octolib.py", "ANSWER = 42\n")
    out = tmp_path / "new-site"
    config = trust_config(instance, tmp_path / "trust_config.json")
    env = {"SIGSTORE_ID_TOKEN": "", "GITHUB_ACTIONS": "", "ACTIONS_ID_TOKEN_REQUEST_URL": ""}
    result = run_cli(
        tmp_path,
        "sign",
        publisher.src,
        "--out",
        out,
        "--sigstore",
        "--sigstore-trust-config",
        config,
        "--json",
        **env,
    )
    assert result.returncode != 0, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["check"] == "sigstore-sign"
    assert "no OIDC identity token" in error["message"]
    assert not out.exists()


def test_sign_needs_a_key_or_sigstore(publisher: Publisher, tmp_path: Path) -> None:
    publisher.write("octolib.py", "ANSWER = 42\n")
    data = run_json(tmp_path, "sign", publisher.src, "--out", tmp_path / "o", expect=1)
    assert data["error"]["code"] == "config-error"


def test_configuration_file_pins_a_key_and_an_identity(
    publisher: Publisher, instance: TestSigstore, tmp_path: Path
) -> None:
    """[[repositories.NAME.publishers]]: 2 of {Alice's key, the CI identity}."""
    (tmp_path / "trusted_root.json").write_bytes(instance.trusted_root_json())
    publisher.write("octolib.py", "ANSWER = 42\n")
    publisher.publish(
        private_keys=[publisher.private_key],
        sigstore_sign=lambda payload: instance.sign(payload, github_claims()),
    )
    config = tmp_path / "secure-import.toml"
    config.write_text(
        f"""
[repositories.octo]
url = "{publisher.url}"
modules = ["octolib"]
ca_bundle = "{publisher.rig.ca_pem_path}"
threshold = 2
sigstore_trusted_root = "trusted_root.json"

[[repositories.octo.publishers]]
key = "{publisher.pub_path}"

[[repositories.octo.publishers]]
issuer = "github-actions"
repository = "octo-org/octo-lib"
workflow = ".github/workflows/release.yml"
ref = "refs/tags/v*"
"""
    )
    repos = secure_import.configure(config)
    assert repos[0].pinned_root.threshold == 2
    assert len(repos[0].pinned_root.identities) == 1
    assert importlib.import_module("octolib").ANSWER == 42
    checked = run_json(tmp_path, "check", "--config", config)
    details = json.dumps(checked)
    assert "sigstore issuer=https://token.actions.githubusercontent.com" in details
    assert "sigstore:issuer=" in details


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ('[[repositories.x.publishers]]\nissuer = "github-actions"\n', "an issuer alone"),
        (
            '[[repositories.x.publishers]]\nissuer = "github-actions"\nrepository = "o/r"\n'
            'branch = "main"\n',
            "unknown keys",
        ),
        (
            '[[repositories.x.publishers]]\nkey = "a.pub"\nissuer = "github-actions"\n',
            "only the field key",
        ),
        (
            'threshold = 3\n[[repositories.x.publishers]]\nissuer = "github-actions"\n'
            'repository = "o/r"\n[[repositories.x.publishers]]\nissuer = "gitlab"\n'
            'repository = "g/p"\n',
            "plus one for the Sigstore identities",
        ),
    ],
)
def test_bad_publisher_tables_are_refused(tmp_path: Path, table: str, fragment: str) -> None:
    from secure_import.settings import load_settings

    config = tmp_path / "secure-import.toml"
    head = '[repositories.x]\nurl = "https://example.org/r/"\nmodules = ["m"]\n'
    if table.startswith("threshold"):
        head = head + table.split("\n", 1)[0] + "\n"
        table = table.split("\n", 1)[1]
    config.write_text(head + table)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert fragment in str(info.value)


def test_sign_sigstore_in_a_github_actions_job_publishes_an_importable_site(
    publisher: Publisher, instance: TestSigstore, tmp_path: Path
) -> None:
    """``secure-import sign --sigstore`` as the GitHub Actions recipe runs it:
    sigstore-python detects the job's ambient OIDC credentials (the token
    endpoint), gets a certificate from the CA and logs the signature; the
    consumer then imports through the finder with the workflow identity pinned."""
    from .sigstore_services import SigstoreServices

    services = SigstoreServices(instance)
    try:
        config = tmp_path / "trust_config.json"
        config.write_text(json.dumps(services.trust_config()))
        publisher.write("octolib.py", "ANSWER = 42\n")
        site = tmp_path / "ci-site"
        result = run_cli(
            tmp_path,
            "sign",
            publisher.src,
            "--out",
            site,
            "--sigstore",
            "--sigstore-trust-config",
            config,
            **services.github_env(),
        )
        assert result.returncode == 0, (services.errors, result.stderr[-2000:])
        assert [r.split("?")[0] for r in services.requests] == [
            "GET /oidc/token",
            "POST /api/v2/signingCert",
            "POST /api/v1/log/entries",
        ]
    finally:
        services.close()
    assert json.loads((site / "secure-import-manifest.json").read_bytes())["signatures"] == []
    # Serve what CI produced and import it with the identity pinned.
    for item in site.iterdir():
        target = publisher.out / item.name
        if item.is_dir():
            import shutil

            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            target.write_bytes(item.read_bytes())
    (tmp_path / "trusted_root.json").write_bytes(instance.trusted_root_json())
    secure_import.add_repo(
        publisher.url,
        publishers=[
            secure_import.SigstoreIdentity(
                issuer="github-actions",
                repository="octo-org/octo-lib",
                workflow=".github/workflows/release.yml",
                ref="refs/tags/v*",
            )
        ],
        sigstore_trusted_root=tmp_path / "trusted_root.json",
        ca_bundle=publisher.rig.ca_pem_path,
        modules=["octolib"],
    )
    assert importlib.import_module("octolib").ANSWER == 42
