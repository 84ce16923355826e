"""Publishing a signed site to S3-compatible storage (an emulator over TLS on 127.0.0.1).

``secure-import publish SITE --to s3://bucket/prefix`` itself does the uploads;
consumers then import through the bucket's HTTPS endpoint with the ordinary
finder.  Attack ids (THREATS.md) in the docstrings: F1/M13 an object altered in
the bucket, M8 a rollback pushed by a publisher with an old site, T1/T4/T5
plaintext, unverified TLS or loosening by environment variables; the
concurrent-publisher cases are the ordering guarantees of issue 17.
"""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    ConfigError,
    HashMismatchError,
    InsecureURLError,
    PublishConflictError,
    TLSError,
)
from secure_import.publish import s3 as s3publish
from secure_import.publish.s3 import LOCK_NAME, publish_to_s3
from secure_import.publish.sign import publish
from secure_import.store.keyfiles import (
    generate_keypair,
    load_private_key_file,
    load_public_key_file,
)
from secure_import.transport.s3 import S3Location, S3Options, open_store, parse_s3_url
from secure_import.verify.manifest import parse as parse_manifest

from .clirunner import child_env, run_cli
from .conftest import canary_code, forget_remote_modules
from .s3rig import TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Bucket

obstore = pytest.importorskip("obstore")


class Site:
    """A publisher's source tree and signed site (the output of ``secure-import sign``)."""

    def __init__(self, tmp: Path, name: str = "site", key_name: str = "pub") -> None:
        self.tmp = tmp
        self.src = tmp / f"{name}-src"
        self.out = tmp / f"{name}-out"
        keys = tmp / f"{key_name}-keys"
        if (keys / f"{key_name}.pub").exists():
            self.key_path, self.pub_path = keys / f"{key_name}.key", keys / f"{key_name}.pub"
        else:
            self.key_path, self.pub_path = generate_keypair(key_name, keys)
        self.src.mkdir()

    def write(self, rel: str, text: str) -> None:
        path = self.src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def sign(self, **kwargs: Any) -> int:
        result = publish(
            self.src, self.out, private_keys=[load_private_key_file(self.key_path)], **kwargs
        )
        return result.manifest.version

    def manifest_bytes(self) -> bytes:
        return (self.out / MANIFEST_NAME).read_bytes()


def _store(bucket: S3Bucket, prefix: str = "") -> tuple[Any, S3Location]:
    location = parse_s3_url(bucket.url(prefix))
    return open_store(location, _options(bucket), Limits()), location


def _options(bucket: S3Bucket) -> S3Options:
    return S3Options(endpoint=bucket.emulator.endpoint, ca_bundle=bucket.emulator.ca_pem_path)


def _objects(bucket: S3Bucket) -> dict[str, bytes]:
    store, _ = _store(bucket)
    found: dict[str, bytes] = {}
    for batch in obstore.list(store):
        for meta in batch:
            found[meta["path"]] = bytes(obstore.get(store, meta["path"]).bytes())
    return found


def _remote_version(bucket: S3Bucket, prefix: str) -> int:
    env = json.loads(_objects(bucket)[prefix + MANIFEST_NAME])
    return parse_manifest(base64.b64decode(env["payload"])).version


def _publish_cli(
    tmp: Path,
    site: Site,
    bucket: S3Bucket,
    prefix: str,
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        tmp,
        "publish",
        site.out,
        "--to",
        bucket.url(prefix),
        "--key",
        site.pub_path,
        "--endpoint",
        bucket.emulator.endpoint,
        "--ca-bundle",
        bucket.emulator.ca_pem_path,
        *extra,
    )


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TEST_SECRET_KEY not in text


# --- publish, then import through the bucket's HTTPS endpoint ------------------------


def test_cli_publishes_signed_site_and_it_imports_through_the_bucket_https_endpoint(
    tmp_path: Path, s3_bucket: S3Bucket, paths: secure_import.Paths, canary: Path
) -> None:
    site = Site(tmp_path)
    site.write("s3shop/__init__.py", "from .cart import total\n" + canary_code(canary))
    site.write("s3shop/cart.py", "def total(xs):\n    return sum(xs)\n")
    site.write("s3shop/data.txt", "price list\n")
    assert site.sign() == 1

    done = _publish_cli(tmp_path, site, s3_bucket, "releases/shop", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["version"] == 1 and report["previous_version"] is None
    assert report["url"] == f"s3://{s3_bucket.name}/releases/shop/"
    assert report["uploaded"][-1] == MANIFEST_NAME  # the manifest went last
    _assert_no_secret(done.stdout, done.stderr)
    stored = _objects(s3_bucket)
    prefix = "releases/shop/"
    assert stored[prefix + MANIFEST_NAME] == site.manifest_bytes()
    assert stored[prefix + "s3shop/cart.py"] == (site.src / "s3shop/cart.py").read_bytes()
    assert prefix + LOCK_NAME not in stored  # the lock was released
    assert all(key.startswith(prefix) for key in stored)

    s3_bucket.emulator.make_public(s3_bucket.name)
    url = s3_bucket.https_url("releases/shop")
    secure_import.add_repo(
        url, keys=[site.pub_path], paths=paths, ca_bundle=s3_bucket.emulator.ca_pem_path
    )
    mod = importlib.import_module("s3shop")
    assert mod.total([1, 2]) == 3
    assert canary.read_text() == "ran"
    loads = {r["module"]: r["url"] for r in _audit(paths, "load")}
    assert loads["s3shop"] == url + "s3shop/__init__.py"
    assert loads["s3shop.cart"] == url + "s3shop/cart.py"


def _audit(paths: secure_import.Paths, event: str) -> list[dict[str, Any]]:
    from secure_import.store.audit import AuditLog

    return [r for r in AuditLog(paths.audit_log).records() if r["event"] == event]


def test_tampered_object_in_the_bucket_is_refused_over_https(
    tmp_path: Path, s3_bucket: S3Bucket, paths: secure_import.Paths, canary: Path
) -> None:
    """F1/M13: the store is not trusted; a module rewritten in the bucket never runs."""
    site = Site(tmp_path)
    site.write("s3evil.py", "X = 1\n" + "#" * 300 + "\n")
    site.sign()
    publish_to_s3(
        site.out,
        s3_bucket.url("p"),
        keys=[load_public_key_file(site.pub_path)],
        options=_options(s3_bucket),
    )
    store, _ = _store(s3_bucket, "p")
    evil = canary_code(canary).encode()
    evil += b"#" * (307 - len(evil) - 1) + b"\n"  # the signed length: only the hash differs
    assert len(evil) == 307
    for key in _objects(s3_bucket):
        if key.endswith((".py", ".bin")):
            obstore.put(store, key, evil)
    s3_bucket.emulator.make_public(s3_bucket.name)
    secure_import.add_repo(
        s3_bucket.https_url("p"),
        keys=[site.pub_path],
        paths=paths,
        ca_bundle=s3_bucket.emulator.ca_pem_path,
    )
    with pytest.raises(HashMismatchError):
        importlib.import_module("s3evil")
    assert not canary.exists()
    assert "s3evil" not in sys.modules
    refusals = _audit(paths, "refuse")
    assert refusals and refusals[-1]["code"] == "hash-mismatch"
    assert refusals[-1]["url"].startswith(s3_bucket.https_url("p"))


# --- versions: never backwards, idempotent, repairs ----------------------------------


def test_newer_version_replaces_older_and_republishing_an_older_site_is_refused(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    """M8 at the source: a publisher with an old site cannot roll the store back."""
    site = Site(tmp_path)
    site.write("s3ver.py", "V = 1\n")
    site.sign()
    old_site = tmp_path / "v1-copy"
    import shutil

    shutil.copytree(site.out, old_site)
    keys = [load_public_key_file(site.pub_path)]
    first = publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    site.write("s3ver.py", "V = 2\n")
    site.sign()
    second = publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert (first.version, second.version, second.previous_version) == (1, 2, 1)
    assert "s3ver.py" in second.uploaded
    before = _objects(s3_bucket)

    with pytest.raises(PublishConflictError) as info:
        publish_to_s3(old_site, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert info.value.check == "remote-version"
    assert info.value.got == 2 and info.value.expected == "< 1"
    assert _objects(s3_bucket) == before  # nothing written, lock released


def test_same_site_twice_is_already_published_and_restores_altered_content(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    site = Site(tmp_path)
    site.write("s3same/__init__.py", "A = 1\n")
    site.sign()
    keys = [load_public_key_file(site.pub_path)]
    publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    store, _ = _store(s3_bucket)
    obstore.put(store, "s3same/__init__.py", b"A = 666\n")
    obstore.delete(store, next(k for k in _objects(s3_bucket) if k.endswith(".zlib")))

    again = publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert again.already_published and again.previous_version == 1
    assert sorted(p.rsplit(".", 1)[-1] for p in again.uploaded) == ["py", "zlib"]
    assert MANIFEST_NAME in again.unchanged
    stored = _objects(s3_bucket)
    assert stored["s3same/__init__.py"] == b"A = 1\n"


def test_manifest_in_the_store_that_does_not_verify_is_not_replaced(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    site = Site(tmp_path)
    site.write("s3other.py", "X = 1\n")
    site.sign()
    stranger = Site(tmp_path, "stranger", key_name="stranger")
    stranger.write("s3other.py", "X = 2\n")
    stranger.sign(version=7)
    publish_to_s3(
        stranger.out,
        s3_bucket.url(),
        keys=[load_public_key_file(stranger.pub_path)],
        options=_options(s3_bucket),
    )
    with pytest.raises(PublishConflictError) as info:
        publish_to_s3(
            site.out,
            s3_bucket.url(),
            keys=[load_public_key_file(site.pub_path)],
            options=_options(s3_bucket),
        )
    assert info.value.check == "remote-manifest"
    assert _objects(s3_bucket)[MANIFEST_NAME] == stranger.manifest_bytes()


def test_a_site_that_does_not_verify_uploads_nothing(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    site = Site(tmp_path)
    site.write("s3bad.py", "X = 1\n")
    site.sign()
    (site.out / "s3bad.py").write_text("X = 'altered after signing'\n")
    with pytest.raises(ConfigError) as info:
        publish_to_s3(
            site.out,
            s3_bucket.url(),
            keys=[load_public_key_file(site.pub_path)],
            options=_options(s3_bucket),
        )
    assert info.value.check == "site-verify"
    other = Site(tmp_path, "other", key_name="other")
    with pytest.raises(ConfigError):
        publish_to_s3(
            site.out,
            s3_bucket.url(),
            keys=[load_public_key_file(other.pub_path)],
            options=_options(s3_bucket),
        )
    assert _objects(s3_bucket) == {}


# --- concurrent publishers -----------------------------------------------------------


def _rival_sites(tmp_path: Path, count: int) -> list[Site]:
    """``count`` different version-2 sites of one publisher, over a shared version 1."""
    sites = []
    for i in range(count):
        site = Site(tmp_path, f"rival{i}")
        site.write("s3race/__init__.py", "from .data import WHO\n")
        site.write("s3race/data.py", "WHO = 'v1'\n")
        site.sign(version=1)
        sites.append(site)
    return sites


def test_concurrent_publisher_processes_one_wins_the_others_get_a_clear_error(
    tmp_path: Path, s3_bucket: S3Bucket, paths: secure_import.Paths
) -> None:
    """Four ``secure-import publish`` processes race to publish version 2 over version 1:
    exactly one succeeds, the others fail with publish-conflict, and the store holds the
    winner's complete release (every file matches its manifest; no lock left)."""
    sites = _rival_sites(tmp_path, 4)
    keys = [load_public_key_file(sites[0].pub_path)]
    publish_to_s3(sites[0].out, s3_bucket.url("race"), keys=keys, options=_options(s3_bucket))
    for i, site in enumerate(sites):
        site.write("s3race/data.py", f"WHO = 'rival {i}'\n" + "# padding\n" * i)
        site.write(f"s3race/only{i}.py", f"N = {i}\n")
        assert site.sign() == 2
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secure_import",
                "publish",
                str(site.out),
                "--to",
                s3_bucket.url("race"),
                "--key",
                str(site.pub_path),
                "--endpoint",
                s3_bucket.emulator.endpoint,
                "--ca-bundle",
                str(s3_bucket.emulator.ca_pem_path),
            ],
            env=child_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for site in sites
    ]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    winners = [i for i, (code, _, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    for i, (code, out, err) in enumerate(results):
        _assert_no_secret(out, err)
        if i != winners[0]:
            assert code == 1 and "[publish-conflict]" in err, (out, err)
    stored = _objects(s3_bucket)
    winner = sites[winners[0]]
    assert stored["race/" + MANIFEST_NAME] == winner.manifest_bytes()
    assert "race/" + LOCK_NAME not in stored
    s3_bucket.emulator.make_public(s3_bucket.name)
    secure_import.add_repo(
        s3_bucket.https_url("race"),
        keys=[winner.pub_path],
        paths=paths,
        ca_bundle=s3_bucket.emulator.ca_pem_path,
    )
    assert importlib.import_module("s3race").WHO == f"rival {winners[0]}"
    importlib.import_module(f"s3race.only{winners[0]}")
    forget_remote_modules()


def test_threads_racing_on_the_conditional_manifest_put_exactly_one_commits(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    """Eight threads write a manifest conditioned on the same ETag at once: the store
    takes one; every other gets publish-conflict (manifest-commit), never a silent win."""
    store, location = _store(s3_bucket)
    first = obstore.put(store, MANIFEST_NAME, b"v1")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def commit(i: int) -> None:
        barrier.wait()
        try:
            s3publish._commit_manifest(
                obstore, store, location, f"v2 by {i}".encode(), first["e_tag"]
            )
            outcomes.append(f"won {i}")
        except PublishConflictError as exc:
            assert exc.check == "manifest-commit"
            outcomes.append("conflict")

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [o for o in outcomes if o.startswith("won")]
    assert len(outcomes) == 8 and len(won) == 1, outcomes
    assert _objects(s3_bucket)[MANIFEST_NAME] == f"v2 by {won[0].split()[1]}".encode()


def test_a_manifest_replaced_between_read_and_commit_is_kept(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another tool (ignoring the lock) commits version 2 while we upload our version 2:
    our conditional put fails, and the store keeps the other release."""
    sites = _rival_sites(tmp_path, 2)
    keys = [load_public_key_file(sites[0].pub_path)]
    publish_to_s3(sites[0].out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    for i, site in enumerate(sites):
        site.write("s3race/data.py", f"WHO = 'rival {i}'\n")
        site.sign()
    store, _ = _store(s3_bucket)
    real_upload = s3publish._upload_content

    def upload_then_rival_commits(*args: Any) -> None:
        real_upload(*args)
        obstore.put(store, MANIFEST_NAME, sites[1].manifest_bytes())

    monkeypatch.setattr(s3publish, "_upload_content", upload_then_rival_commits)
    with pytest.raises(PublishConflictError) as info:
        publish_to_s3(sites[0].out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert info.value.check == "manifest-commit"
    stored = _objects(s3_bucket)
    assert stored[MANIFEST_NAME] == sites[1].manifest_bytes()
    assert LOCK_NAME not in stored


def test_a_held_lock_refuses_a_second_publisher_until_broken(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    site = Site(tmp_path)
    site.write("s3lock.py", "X = 1\n")
    site.sign()
    store, _ = _store(s3_bucket)
    obstore.put(
        store,
        LOCK_NAME,
        json.dumps({"token": "t", "created": "2026-01-01T00:00:00+00:00"}).encode(),
    )
    keys = [load_public_key_file(site.pub_path)]
    with pytest.raises(PublishConflictError) as info:
        publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert info.value.check == "publish-lock" and "2026-01-01" in str(info.value)
    assert set(_objects(s3_bucket)) == {LOCK_NAME}
    done = _publish_cli(tmp_path, site, s3_bucket, "", "--break-lock")
    assert done.returncode == 0, done.stderr
    assert "published" in done.stdout and "version 1" in done.stdout
    assert LOCK_NAME not in _objects(s3_bucket)


# --- transport policy: TLS only, credentials never shown --------------------------------


def test_plaintext_endpoints_are_refused_even_when_the_environment_allows_http(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T1/T5: no plaintext to object storage, whatever AWS_ALLOW_HTTP says."""
    site = Site(tmp_path)
    site.write("s3plain.py", "X = 1\n")
    site.sign()
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    plain = s3_bucket.emulator.endpoint.replace("https://", "http://")
    keys = [load_public_key_file(site.pub_path)]
    with pytest.raises(InsecureURLError):
        publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=S3Options(endpoint=plain))
    monkeypatch.setenv("AWS_ENDPOINT_URL", plain)
    with pytest.raises(InsecureURLError) as info:
        publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=S3Options())
    assert "$AWS_ENDPOINT_URL" in str(info.value)


def test_an_untrusted_certificate_is_refused_even_when_the_environment_allows_it(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T4/T5: the emulator's CA is not trusted unless named; AWS_ALLOW_INVALID_CERTIFICATES
    cannot switch verification off."""
    site = Site(tmp_path)
    site.write("s3tls.py", "X = 1\n")
    site.sign()
    monkeypatch.setenv("AWS_ALLOW_INVALID_CERTIFICATES", "true")
    with pytest.raises(TLSError):
        publish_to_s3(
            site.out,
            s3_bucket.url(),
            keys=[load_public_key_file(site.pub_path)],
            options=S3Options(endpoint=s3_bucket.emulator.endpoint),
        )
    assert _objects(s3_bucket) == {}


def test_credentials_never_appear_in_errors_or_output(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    site = Site(tmp_path)
    site.write("s3cred.py", "X = 1\n")
    site.sign()
    missing = S3Bucket(s3_bucket.emulator, "no-such-bucket-here")
    for extra in ((), ("-v",), ("--json",)):
        done = _publish_cli(tmp_path, site, missing, "x", *extra)
        assert done.returncode == 1
        assert "[http-status]" in done.stderr or "[transport" in done.stderr, done.stderr
        _assert_no_secret(done.stdout, done.stderr)
        assert TEST_ACCESS_KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://Bucket/x",
        "s3://b/x",
        "s3://bucket/../x",
        "s3://bucket/a//b",
        "s3://user@bucket/x",
        "s3://bucket:9000/x",
        "s3://bucket/x?y=1",
        "https://bucket/x",
        "s3://bucket/a\\b",
        "s3://bucket/./a",
    ],
)
def test_malformed_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureURLError):
        parse_s3_url(url)


def test_s3_urls_name_bucket_and_prefix() -> None:
    assert parse_s3_url("s3://my-bucket") == S3Location("my-bucket", "")
    assert parse_s3_url("s3://my.bucket/a/b/") == S3Location("my.bucket", "a/b/")
    assert parse_s3_url("s3://my-bucket/a/b").url_for("x.py") == "s3://my-bucket/a/b/x.py"


def test_importing_secure_import_does_not_import_obstore(tmp_path: Path) -> None:
    code = "import secure_import, sys; print('obstore' in sys.modules, 'boto3' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_without_boto3_obstore_reads_the_credentials_from_the_environment(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain without boto3 installed: obstore's own (environment variables here)."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    site = Site(tmp_path)
    site.write("s3nob.py", "X = 1\n")
    site.sign()
    done = publish_to_s3(
        site.out,
        s3_bucket.url(),
        keys=[load_public_key_file(site.pub_path)],
        options=_options(s3_bucket),
    )
    assert done.version == 1 and MANIFEST_NAME in _objects(s3_bucket)


def test_without_obstore_an_s3_location_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)
    with pytest.raises(ConfigError) as info:
        open_store(parse_s3_url("s3://bucket/x"), S3Options(), Limits())
    assert info.value.check == "s3-support" and "secure-import[s3]" in str(info.value)


def test_keyless_signing_files_ride_with_the_manifest_and_stale_ones_are_removed(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    """A Sigstore bundle and payload file in the site are uploaded before the manifest;
    a later release without them removes the stale copies (they belong to an older
    manifest); a payload file that is not the manifest's payload uploads nothing."""
    from secure_import.config import MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME

    site = Site(tmp_path)
    site.write("s3sig.py", "X = 1\n")
    site.sign()
    keys = [load_public_key_file(site.pub_path)]
    payload = base64.b64decode(json.loads(site.manifest_bytes())["payload"])
    (site.out / MANIFEST_PAYLOAD_NAME).write_bytes(b"not the payload")
    (site.out / SIGSTORE_BUNDLE_NAME).write_bytes(b'{"bundle": "opaque to the publisher"}')
    with pytest.raises(ConfigError) as info:
        publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert info.value.check == "site-verify" and _objects(s3_bucket) == {}

    (site.out / MANIFEST_PAYLOAD_NAME).write_bytes(payload)
    done = publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    assert done.uploaded.index(SIGSTORE_BUNDLE_NAME) < done.uploaded.index(MANIFEST_NAME)
    assert _objects(s3_bucket)[MANIFEST_PAYLOAD_NAME] == payload

    site.write("s3sig.py", "X = 2\n")
    site.sign()
    for name in (MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME):
        (site.out / name).unlink(missing_ok=True)
    publish_to_s3(site.out, s3_bucket.url(), keys=keys, options=_options(s3_bucket))
    stored = _objects(s3_bucket)
    assert SIGSTORE_BUNDLE_NAME not in stored and MANIFEST_PAYLOAD_NAME not in stored
    assert stored[MANIFEST_NAME] == site.manifest_bytes()
