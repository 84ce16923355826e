"""``s3://`` repositories: the same signed site read through obstore, verified like https.

The site is published by ``secure-import publish`` to the S3-compatible emulator
(TLS on 127.0.0.1) and imported both through the bucket's HTTPS endpoint and as
``s3://bucket/prefix/``.  The only difference between the two is the transport
object: the pinned keys, caps, rollback and expiry rules are the repository's.
Attack ids (THREATS.md): F1/M13 altered object, M8 rollback, T1/T4/T5
plaintext or unverified TLS, T7 oversize bodies.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import (
    ConfigError,
    HashMismatchError,
    InsecureURLError,
    RedirectRefusedError,
    RollbackError,
    TLSError,
    TooLargeError,
)
from secure_import.publish.s3 import publish_to_s3
from secure_import.store.audit import AuditLog
from secure_import.store.keyfiles import load_public_key_file
from secure_import.store.paths import Paths
from secure_import.transport.https import TransportOptions
from secure_import.transport.s3 import S3Transport, parse_s3_url

from .clirunner import run_cli, run_json
from .conftest import canary_code, forget_remote_modules
from .s3rig import S3Bucket
from .test_s3_publish import Site, _objects, _options, _store

obstore = pytest.importorskip("obstore")


def _add_s3(bucket: S3Bucket, site: Site, paths: Paths, prefix: str, **kw: Any) -> Any:
    return secure_import.add_repo(
        bucket.url(prefix),
        keys=[site.pub_path],
        paths=paths,
        ca_bundle=bucket.emulator.ca_pem_path,
        s3_endpoint=bucket.emulator.endpoint,
        **kw,
    )


def _records(paths: Paths, event: str) -> list[dict[str, Any]]:
    return [r for r in AuditLog(paths.audit_log).records() if r["event"] == event]


def _published(tmp_path: Path, bucket: S3Bucket, prefix: str, files: dict[str, str]) -> Site:
    site = Site(tmp_path)
    for rel, text in files.items():
        site.write(rel, text)
    site.sign()
    done = run_cli(
        tmp_path,
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
    )
    assert done.returncode == 0, done.stderr
    return site


def test_site_published_by_the_cli_imports_as_s3_and_through_the_https_endpoint(
    tmp_path: Path, s3_bucket: S3Bucket, canary: Path
) -> None:
    site = _published(
        tmp_path,
        s3_bucket,
        "team/tools",
        {
            "s3tools/__init__.py": "from .fmt import shout\n" + canary_code(canary),
            "s3tools/fmt.py": "def shout(s):\n    return s.upper()\n",
            "s3tools/words.txt": "alpha\n",
        },
    )
    paths = Paths(cache_dir=tmp_path / "c1", state_dir=tmp_path / "s1", log_dir=tmp_path / "l1")
    repo = _add_s3(s3_bucket, site, paths, "team/tools")
    assert repo.url == f"s3://{s3_bucket.name}/team/tools/"
    mod = importlib.import_module("s3tools")
    assert mod.shout("hi") == "HI" and canary.read_text() == "ran"
    assert mod.__file__ == repo.url + "s3tools/__init__.py"
    from importlib.resources import files

    assert (files("s3tools") / "words.txt").read_text() == "alpha\n"
    loads = {r["module"]: r for r in _records(paths, "load")}
    assert loads["s3tools"]["url"] == repo.url + "s3tools/__init__.py"
    assert loads["s3tools.fmt"]["outcome"] == "ok"
    assert all(r["url"].startswith(repo.url) for r in _records(paths, "manifest"))
    assert repo.fetcher.stats.requests >= 2  # the manifest and the package bundle

    # The same objects as a static HTTPS site: the bucket's path-style endpoint.
    for r in list(secure_import.repositories()):
        secure_import.remove_repo(r)
    forget_remote_modules()
    canary.unlink()
    s3_bucket.emulator.make_public(s3_bucket.name)
    https_paths = Paths(
        cache_dir=tmp_path / "c2", state_dir=tmp_path / "s2", log_dir=tmp_path / "l2"
    )
    url = s3_bucket.https_url("team/tools")
    secure_import.add_repo(
        url, keys=[site.pub_path], paths=https_paths, ca_bundle=s3_bucket.emulator.ca_pem_path
    )
    assert importlib.import_module("s3tools").shout("x") == "X"
    assert canary.read_text() == "ran"
    assert {r["url"] for r in _records(https_paths, "load")} >= {url + "s3tools/__init__.py"}


def test_object_altered_in_the_bucket_is_refused_as_s3(
    tmp_path: Path, s3_bucket: S3Bucket, paths: Paths, canary: Path
) -> None:
    """F1/M13: a store that is not honest; the module never runs, nothing unverified is
    cached, the refusal is audited with the s3 URL."""
    site = _published(tmp_path, s3_bucket, "p", {"s3bad.py": "X = 1\n" + "#" * 300 + "\n"})
    store, _ = _store(s3_bucket)
    evil = canary_code(canary).encode()
    evil += b"#" * (307 - len(evil) - 1) + b"\n"
    for key in _objects(s3_bucket):
        if key.endswith((".py", ".bin")):
            obstore.put(store, key, evil)
    repo = _add_s3(s3_bucket, site, paths, "p")
    with pytest.raises(HashMismatchError):
        importlib.import_module("s3bad")
    assert not canary.exists() and "s3bad" not in sys.modules
    refusal = _records(paths, "refuse")[-1]
    assert refusal["code"] == "hash-mismatch" and refusal["url"].startswith(repo.url)
    for obj in (paths.cache_dir / "objects").rglob("*") if paths.cache_dir.exists() else ():
        assert obj.is_dir() or obj.read_bytes() != evil


def test_rollback_through_the_bucket_is_refused_as_s3(
    tmp_path: Path, s3_bucket: S3Bucket, paths: Paths
) -> None:
    """M8: an older, validly signed manifest put back in the bucket is refused."""
    site = _published(tmp_path, s3_bucket, "r", {"s3roll.py": "V = 1\n"})
    old_manifest = site.manifest_bytes()
    site.write("s3roll.py", "V = 2\n")
    site.sign()
    publish_to_s3(
        site.out,
        s3_bucket.url("r"),
        keys=[load_public_key_file(site.pub_path)],
        options=_options(s3_bucket),
    )
    _add_s3(s3_bucket, site, paths, "r")
    assert importlib.import_module("s3roll").V == 2
    store, _ = _store(s3_bucket)
    obstore.put(store, "r/" + MANIFEST_NAME, old_manifest)
    for r in list(secure_import.repositories()):
        secure_import.remove_repo(r)
    forget_remote_modules()
    _add_s3(s3_bucket, site, paths, "r")
    with pytest.raises(RollbackError):
        importlib.import_module("s3roll")
    assert "s3roll" not in sys.modules
    assert _records(paths, "refuse")[-1]["code"] == "rollback"


def test_unchanged_manifest_is_a_conditional_request_answered_not_modified(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    _published(tmp_path, s3_bucket, "e", {"s3etag.py": "X = 1\n"})
    transport = S3Transport(parse_s3_url(s3_bucket.url("e")), _options(s3_bucket), limits=Limits())
    url = s3_bucket.url("e") + MANIFEST_NAME
    first = transport.get(url, cap=1 << 20, what="manifest")
    assert first.status == 200 and first.body and first.etag
    again = transport.get(url, cap=1 << 20, etag=first.etag, what="manifest")
    assert (again.status, again.body) == (304, None)
    assert transport.stats.requests == 2 and transport.stats.bytes == len(first.body)


def test_transport_keeps_to_the_cap_and_the_prefix(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    """T7: an object larger than the cap is refused before its body is read; URLs
    outside the repository's bucket and prefix are never fetched."""
    store, _ = _store(s3_bucket)
    obstore.put(store, "cap/big.bin", b"x" * 5000)
    obstore.put(store, "other/secret.py", b"S = 1\n")
    transport = S3Transport(
        parse_s3_url(s3_bucket.url("cap")), _options(s3_bucket), limits=Limits()
    )
    with pytest.raises(TooLargeError):
        transport.get(s3_bucket.url("cap") + "big.bin", cap=4999)
    assert transport.get(s3_bucket.url("cap") + "big.bin", cap=5000).body == b"x" * 5000
    for url in (
        s3_bucket.url("other") + "secret.py",
        "s3://elsewhere/cap/big.bin",
        s3_bucket.url("cap"),
        s3_bucket.https_url("cap") + "big.bin",
    ):
        with pytest.raises(RedirectRefusedError):
            transport.get(url, cap=100)
    missing = s3_bucket.url("cap") + "none.py"
    with pytest.raises(secure_import.errors.HTTPStatusError) as info:
        transport.get(missing, cap=100)
    assert info.value.got == 404 and info.value.url == missing


def test_s3_repository_refuses_plaintext_and_untrusted_tls(
    tmp_path: Path, s3_bucket: S3Bucket, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T1/T4/T5: never plaintext, never an unverified certificate, whatever the
    environment says."""
    site = _published(tmp_path, s3_bucket, "t", {"s3tls.py": "X = 1\n"})
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_ALLOW_INVALID_CERTIFICATES", "true")
    plain = s3_bucket.emulator.endpoint.replace("https://", "http://")
    with pytest.raises(InsecureURLError):
        secure_import.add_repo(
            s3_bucket.url("t"), keys=[site.pub_path], paths=paths, s3_endpoint=plain
        )
    secure_import.add_repo(
        s3_bucket.url("t"),
        keys=[site.pub_path],
        paths=paths,
        s3_endpoint=s3_bucket.emulator.endpoint,
    )  # no CA named
    with pytest.raises(TLSError):
        importlib.import_module("s3tls")
    assert "s3tls" not in sys.modules
    assert _records(paths, "refuse")[-1]["code"] == "tls-error"


def test_s3_repository_options_are_checked_when_it_is_added(
    tmp_path: Path, s3_credentials: None, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = Site(tmp_path).pub_path
    with pytest.raises(ConfigError) as info:
        secure_import.Repository(
            "https://example.org/r/",
            keys=[pub],
            paths=paths,
            s3_endpoint="https://minio.example:9000",
        )
    assert info.value.check == "s3-options"
    with pytest.raises(ConfigError):
        secure_import.Repository(
            "s3://bucket/r",
            keys=[pub],
            paths=paths,
            transport=TransportOptions(use_truststore=True),
        )
    with pytest.raises(InsecureURLError):
        secure_import.Repository("s3://bucket/../r", keys=[pub], paths=paths)
    monkeypatch.setitem(sys.modules, "obstore", None)
    with pytest.raises(ConfigError) as info:
        secure_import.add_repo("s3://bucket/r", keys=[pub], paths=paths)
    assert info.value.check == "s3-support"
    assert _records(paths, "refuse")[-1]["code"] == "config-error"


def _s3_config(tmp_path: Path, bucket: S3Bucket, site: Site, prefix: str, extra: str = "") -> Path:
    """An explicit configuration file (``--config``) naming an s3:// repository: the
    endpoint is a user-level setting (a project file may not choose it)."""
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "pub.pub").write_bytes(site.pub_path.read_bytes())
    path = conf / "secure-import.toml"
    path.write_text(
        "[repositories.bucket]\n"
        f'url = "{bucket.url(prefix)}"\nkeys = ["pub.pub"]\nmodules = ["s3cfg"]\n'
        f'ca_bundle = "{bucket.emulator.ca_pem_path}"\n'
        f's3_endpoint = "{bucket.emulator.endpoint}"\ns3_region = "us-east-1"\n{extra}'
    )
    return path


def test_s3_repository_from_a_configuration_file_checks_and_runs(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    site = _published(tmp_path, s3_bucket, "cfg", {"s3cfg.py": "print('from the bucket')\n"})
    conf = _s3_config(tmp_path, s3_bucket, site, "cfg")
    report = run_json(tmp_path, "check", "--config", conf, "--no-project")
    assert report["ok"], report
    found = {f["check"]: f["detail"] for f in report["findings"]}
    assert "(s3, through obstore)" in found["url"]
    assert s3_bucket.emulator.endpoint in found["transport"]
    script = tmp_path / "use.py"
    script.write_text("import s3cfg\nprint(s3cfg.__file__)\n")
    ran = run_cli(tmp_path, "run", "--config", conf, "--no-project", script)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:2] == ["from the bucket", s3_bucket.url("cfg") + "s3cfg.py"]


@pytest.mark.parametrize(
    ("extra", "url", "message"),
    [
        ("", "https://example.org/r/", "applies to s3:// repositories only"),
        ('auth = { env = "TOKEN" }\n', None, "takes its credentials from the AWS chain"),
        ('client_cert = "client.pem"\n', None, "takes its credentials from the AWS chain"),
    ],
)
def test_configuration_refuses_options_of_the_other_transport(
    tmp_path: Path, s3_bucket: S3Bucket, extra: str, url: str | None, message: str
) -> None:
    conf = _s3_config(tmp_path, s3_bucket, Site(tmp_path), "cfg", extra)
    if url is not None:
        conf.write_text(conf.read_text().replace(s3_bucket.url("cfg"), url))
    done = run_cli(tmp_path, "config", "--config", conf, "--no-project")
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_configuration_refuses_a_plaintext_s3_endpoint(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    conf = _s3_config(tmp_path, s3_bucket, Site(tmp_path), "cfg")
    conf.write_text(conf.read_text().replace("https://127.0.0.1", "http://127.0.0.1"))
    done = run_cli(tmp_path, "config", "--config", conf, "--no-project")
    assert done.returncode == 1 and "s3_endpoint" in done.stderr, done.stderr


def test_a_project_file_may_not_choose_the_s3_endpoint(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    """H1/H2 spirit: a file found by walking up from the working directory cannot pick
    the server the AWS credentials sign requests for."""
    conf = _s3_config(tmp_path, s3_bucket, Site(tmp_path), "cfg")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pub.pub").write_bytes((conf.parent / "pub.pub").read_bytes())
    (project / "secure-import.toml").write_text(conf.read_text())
    done = run_cli(tmp_path, "config", cwd=project)
    assert done.returncode == 1, done.stderr
    assert "repositories.bucket.s3_endpoint" in done.stderr and "project" in done.stderr
