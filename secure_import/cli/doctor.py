"""``secure-import config`` and ``check``: the effective configuration, and a
doctor that tries every configured repository and says what is wrong."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secure_import.cli.common import _settings
from secure_import.cli.output import EXIT_FAIL, EXIT_OK, Out, Progress
from secure_import.errors import SecureImportError

if TYPE_CHECKING:
    from secure_import.settings import RepositorySettings, Settings


def cmd_config(args: argparse.Namespace, out: Out) -> int:
    settings = _settings(args, out)
    data = settings.as_dict()
    if out.json:
        out.emit(data)
        return EXIT_OK
    out.result("files read (lowest precedence first):")
    for name in settings.files or ("(none)",):
        out.result(f"  {name}")
    for item in settings.ignored:
        out.result(f"  IGNORED (untrusted): {item}")
    out.result("")
    out.table(
        ["setting", "value", "from"],
        [
            (
                key,
                data[key if key != "clock_slack" else "clock_slack_seconds"],
                settings.origins.get(key, "default"),
            )
            for key in (
                "cache_dir",
                "state_dir",
                "log_dir",
                "site",
                "clock_slack",
                "lock_file",
                "frozen",
            )
        ],
    )
    out.result("")
    _repo_table(out, settings.repositories)
    return EXIT_OK


def _repo_table(out: Out, repositories: Sequence[RepositorySettings]) -> None:
    if not repositories:
        out.result("no repositories configured")
        return
    out.table(
        ["name", "url", "modules", "keys", "refresh", "mirrors", "from"],
        [
            (
                r.name,
                r.url,
                "*" if r.modules is None else ",".join(sorted(r.modules)),
                f"{r.threshold} of {len(r.keys)}",
                r.refresh,
                f"{len(r.mirrors)} ({r.fallback})" if r.mirrors else "-",
                r.source,
            )
            for r in repositories
        ],
    )


# --- check ----------------------------------------------------------------------------


@dataclass
class _Finding:
    repository: str
    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
        }


def _s3_transport(repo: RepositorySettings, settings: Settings) -> Any:
    """The obstore transport an s3:// repository will use (built, not used)."""
    from secure_import.transport.s3 import S3Options, S3Transport, parse_s3_url

    options = S3Options(endpoint=repo.s3_endpoint, region=repo.s3_region, ca_bundle=repo.ca_bundle)
    return S3Transport(parse_s3_url(repo.url), options, limits=settings.limits)


def _check_mirror(
    mirror: str, repo: RepositorySettings, settings: Settings, digest: str
) -> tuple[bool, str]:
    """Does ``mirror`` serve byte for byte the manifest just verified?

    A health check only: nothing here is trusted (imports verify whatever a
    mirror serves); a mirror serving another envelope is behind (it would be
    refused as a rollback after a failover), ahead, or altered.
    """
    import hashlib

    from secure_import.config import MANIFEST_NAME
    from secure_import.transport.https import Fetcher

    try:
        fetcher = Fetcher(
            mirror,
            limits=settings.limits,
            ca_bundle=repo.ca_bundle,
            transport=repo.transport().for_mirror(),
        )
        try:
            answer = fetcher.get(
                mirror + MANIFEST_NAME, cap=settings.limits.manifest_max_bytes, what="manifest"
            )
        finally:
            fetcher.close()
    except SecureImportError as exc:
        return False, f"[{exc.code}] {exc.detail}"
    got = hashlib.sha256(answer.body or b"").hexdigest()
    if got != digest:
        return False, (
            "serves another manifest than the one verified (a stale, newer or altered "
            f"copy: failing over to it would be refused): sha256 {got[:16]}, "
            f"expected {digest[:16]}"
        )
    return True, "serves the same signed manifest"


def _check_repository(
    repo: RepositorySettings, settings: Settings, network: bool
) -> list[_Finding]:
    """Each step of a repository's configuration, stopping at the first hard failure."""
    from secure_import.pinning import pinned_root
    from secure_import.settings import build_repository
    from secure_import.store.keyfiles import load_public_key_file
    from secure_import.transport.https import Fetcher

    found: list[_Finding] = []

    def add(check: str, ok: bool, detail: str) -> bool:
        found.append(_Finding(repo.name, check, ok, detail))
        return ok

    is_s3 = repo.url.startswith("s3://")
    add("url", True, f"{repo.url} ({'s3, through obstore' if is_s3 else 'https'})")
    keys = []
    for path in repo.keys:
        try:
            key = load_public_key_file(path)
        except SecureImportError as exc:
            add("key", False, exc.detail)
            continue
        keys.append(key)
        add("key", True, f"{path}: ed25519 {key.key_id[:16]}")
    if len(keys) != len(repo.keys):
        return found
    try:
        root = pinned_root(
            keys=keys,
            publishers=repo.identities,
            threshold=repo.threshold,
            sigstore_trusted_root=repo.sigstore_trusted_root,
        )
    except SecureImportError as exc:
        add("pin", False, exc.detail)
        return found
    for pin in root.identities:
        add("identity", True, f"sigstore {pin.describe()}")
    if root.sigstore_root is not None:
        add(
            "trusted-root",
            True,
            f"{root.sigstore_root.source} (sha256 {root.sigstore_root.sha256[:16]})",
        )
    add(
        "pin",
        True,
        f"threshold {repo.threshold} of {len(root.keys)} keys"
        + (
            f" and {len(root.identities)} Sigstore identities (counted once)"
            if root.identities
            else ""
        ),
    )
    try:
        transport = repo.transport()
        if is_s3:
            _s3_transport(repo, settings).close()
        else:
            Fetcher(
                repo.url, limits=settings.limits, ca_bundle=repo.ca_bundle, transport=transport
            ).close()
    except SecureImportError as exc:
        add("transport", False, exc.detail)
        return found
    if is_s3:
        where = repo.s3_endpoint or "AWS (or $AWS_ENDPOINT_URL)"
        extra = f", CA {repo.ca_bundle} added" if repo.ca_bundle else ""
        add("transport", True, f"TLS to {where}{extra}, credentials from the AWS chain")
    else:
        parts = [
            "truststore"
            if repo.truststore
            else (f"CA {repo.ca_bundle}" if repo.ca_bundle else "certifi CA bundle")
        ]
        if repo.auth is not None:
            parts.append(f"credential {repo.auth.describe()}")
        if repo.client_cert is not None:
            parts.append(f"client certificate {repo.client_cert}")
        add("transport", True, ", ".join(parts))
        if repo.mirrors:
            add(
                "mirrors",
                True,
                f"{', '.join(repo.mirrors)} (fallback {repo.fallback}; no credentials sent)",
            )
    if not network and not repo.offline:
        add("manifest", True, "not checked (--no-network)")
        return found
    repository = build_repository(repo, settings)
    try:
        trusted = repository.trusted_manifest()
    except SecureImportError as exc:
        add(
            "manifest",
            False,
            f"[{exc.code}] {exc.detail}" + (f" (check: {exc.check})" if exc.check else ""),
        )
        return found
    finally:
        repository.close()
    manifest = trusted.manifest
    where = "cached copy (offline)" if repo.offline else "fetched"
    add(
        "manifest",
        True,
        f"{where}: version {manifest.version}, expires "
        f"{manifest.expires.isoformat()}, provides {', '.join(manifest.provides)}, "
        f"signed by {trusted.key_id_text}",
    )
    if not repo.offline:
        for mirror in repo.mirrors:
            ok, detail = _check_mirror(mirror, repo, settings, trusted.envelope_digest)
            add("mirror", ok, f"{mirror}: {detail}")
    if repo.modules is not None:
        missing = sorted(set(repo.modules) - set(manifest.provides))
        add(
            "modules",
            not missing,
            "all allowed modules are provided"
            if not missing
            else f"not declared by the manifest: {', '.join(missing)}",
        )
    return found


def cmd_check(args: argparse.Namespace, out: Out) -> int:
    settings = _settings(args, out)
    findings: list[_Finding] = []
    if settings.lock_file is not None:
        exists = settings.lock_file.is_file()
        findings.append(
            _Finding(
                "-",
                "lock-file",
                exists or not settings.frozen,
                f"{settings.lock_file}" + ("" if exists else " does not exist"),
            )
        )
    if not settings.repositories:
        findings.append(_Finding("-", "repositories", False, "no repositories configured"))
    progress = Progress(out, "checking", len(settings.repositories))
    for repo in settings.repositories:
        findings.extend(_check_repository(repo, settings, network=not args.no_network))
        progress.advance()
    progress.close()
    ok = all(f.ok for f in findings)
    if out.json:
        out.emit(
            {
                "ok": ok,
                "files": list(settings.files),
                "frozen": settings.frozen,
                "unsafe": list(settings.unsafe),
                "findings": [f.as_dict() for f in findings],
            }
        )
    else:
        out.note("configuration files: " + (", ".join(settings.files) or "(none)"))
        out.table(
            ["repository", "check", "status", "detail"],
            [(f.repository, f.check, "ok" if f.ok else "FAIL", f.detail) for f in findings],
            status_column=2,
        )
        out.result(
            out.paint("OK", "32")
            if ok
            else out.paint(f"FAILED: {sum(not f.ok for f in findings)} problem(s)", "31")
        )
    return EXIT_OK if ok else EXIT_FAIL
