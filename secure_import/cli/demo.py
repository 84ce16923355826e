"""``secure-import demo``: the whole story, offline on loopback, in a few seconds.

Publishes the example package shipped inside secure_import, serves it over
HTTPS with a throwaway CA, pins the publisher's key as a user would, imports it
through the verifying finder, then serves a tampered copy and shows the refusal.
Everything lives in a temporary directory: the user's real cache, state and log
directories are never touched, and the manifest is signed at run time so the
demo works on any date.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from secure_import import add_repo, remove_repo
from secure_import.errors import SecureImportError
from secure_import.publish.devtls import make_dev_certificates, server_ssl_context
from secure_import.publish.serve import RepoServer
from secure_import.publish.sign import publish, read_unverified_manifest
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.store.paths import Paths
from secure_import.verify.bundle import bundle_entries, bundle_path

__all__ = ["run_demo"]

_CANARY_LINE = "\nimport pathlib as _p; _p.Path({canary!r}).write_text('attacker code ran')\n"


def _copy_example(target: Path) -> None:
    source = resources.files("secure_import.cli") / "_demo" / "greetings"
    with resources.as_file(source) as path:
        shutil.copytree(path, target / "greetings", ignore=shutil.ignore_patterns("__pycache__"))


def _rebundle(repo_dir: Path) -> None:
    signed = read_unverified_manifest(repo_dir)
    assert signed is not None
    for bundle in signed.bundles or ():
        # The signed bundle rewritten from the changed files, cut or padded to
        # its signed length: only the sha256 can tell.
        body = b"".join((repo_dir / m).read_bytes() for m in bundle.members)
        forged = zlib.compress(body).ljust(bundle.length, b"\0")[: bundle.length]
        (repo_dir / bundle.path).write_bytes(forged)
    if signed.bundles is not None:
        return
    for top in signed.provides:
        members = bundle_entries(signed.files, top)
        (repo_dir / bundle_path(members, top)).write_bytes(
            b"".join((repo_dir / e.path).read_bytes() for e in members)
        )


def _forget(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def run_demo(out: Callable[[str], None] = print) -> int:
    """Run the demo; return 0 when every step behaved as it should."""
    with tempfile.TemporaryDirectory(prefix="secure-import-demo-") as tmp_name:
        tmp = Path(tmp_name)
        paths = Paths(cache_dir=tmp / "cache", state_dir=tmp / "state", log_dir=tmp / "log")
        src = tmp / "src"
        src.mkdir()
        _copy_example(src)

        out("1. Publisher: make a key pair and sign the example package")
        key_path, pub_path = generate_keypair("demo-publisher", tmp / "keys")
        result = publish(src, tmp / "repo", private_keys=[load_private_key_file(key_path)])
        out(
            f"   signed manifest v{result.manifest.version}: "
            f"{len(result.manifest.files)} files, provides {list(result.manifest.provides)}"
        )

        certs = make_dev_certificates()
        ca_path = tmp / "ca.pem"
        ca_path.write_bytes(certs.ca_pem)
        context = server_ssl_context(certs)
        ok = True
        with RepoServer(tmp / "repo", ssl_context=context) as server:
            out(f"2. Serving it over HTTPS at {server.url} (throwaway CA {ca_path.name})")
            out(f"3. Consumer: pin {pub_path.name} and import greetings")
            repo = add_repo(
                server.url, keys=[pub_path], modules=["greetings"], ca_bundle=ca_path, paths=paths
            )
            try:
                greetings = importlib.import_module("greetings")
                out(f"   greetings.hello() -> {greetings.hello()}")
                out(f"   greetings.salutation('Ada') -> {greetings.salutation('Ada')}")
                out(f"   __file__ = {greetings.__file__}  (the https origin)")
                load = next(r for r in repo.audit.records() if r.get("event") == "load")
                out("   audit record: " + json.dumps(load, sort_keys=True))
            finally:
                remove_repo(repo)
                _forget("greetings")

        out("4. Attacker: change one file on the server (the signature is kept)")
        tampered = tmp / "tampered"
        shutil.copytree(tmp / "repo", tampered)
        canary = tmp / "canary.txt"
        init = tampered / "greetings" / "__init__.py"
        signed_length = len(init.read_bytes())
        evil = _CANARY_LINE.format(canary=str(canary)).encode()
        # Same length as the signed file, so only the sha256 can tell.
        init.write_bytes((evil + b"#" * signed_length)[:signed_length])
        _rebundle(tampered)  # a thorough attacker changes the package bundle too
        fresh = Paths(cache_dir=tmp / "cache2", state_dir=paths.state_dir, log_dir=paths.log_dir)
        with RepoServer(tampered, ssl_context=context) as server:
            repo = add_repo(
                server.url, keys=[pub_path], modules=["greetings"], ca_bundle=ca_path, paths=fresh
            )
            try:
                importlib.import_module("greetings")
            except SecureImportError as exc:
                out(f"   import refused: {type(exc).__name__} [{exc.code}]")
                out(f"   {exc}")
                refusal = [r for r in repo.audit.records() if r.get("event") == "refuse"][-1]
                out("   audit record: " + json.dumps(refusal, sort_keys=True))
            else:
                out("   ERROR: the tampered package was imported")
                ok = False
            finally:
                remove_repo(repo)
                _forget("greetings")
        if canary.exists():
            out("   ERROR: attacker code ran")
            ok = False
        else:
            out("   the attacker's code did not run; nothing unverified was cached")
    out("Done: the demo used a temporary directory, now removed." if ok else "Demo FAILED")
    return 0 if ok else 1
