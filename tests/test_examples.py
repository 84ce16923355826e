"""The committed example repository verifies against the committed example key,
and imports over HTTPS exactly as the README walkthrough shows."""

from __future__ import annotations

import importlib
from pathlib import Path

import secure_import
from secure_import.publish.serve import RepoServer
from secure_import.publish.sitecheck import verify_repository
from secure_import.store.keyfiles import load_public_key_file
from secure_import.store.paths import Paths

from .httpsrig import TLSServerFactory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "greetings-repo"
KEY = ROOT / "keys" / "example-publisher.pub"


def test_example_repository_verifies_against_the_pinned_example_key() -> None:
    report = verify_repository(str(EXAMPLE), keys=[load_public_key_file(KEY)])
    assert report.ok, [str(f) for f in report.failures]
    assert report.checked == len(report.manifest.files) if report.manifest else False
    assert report.manifest is not None and report.manifest.provides == ("greetings",)


def test_walkthrough_import_of_the_example(rig: TLSServerFactory, paths: Paths) -> None:
    with RepoServer(EXAMPLE, ssl_context=rig.server_context()) as server:
        secure_import.add_repo(server.url, keys=[KEY], ca_bundle=rig.ca_pem_path, paths=paths)
        greetings = importlib.import_module("greetings")
        assert greetings.salutation("Ada") == "Good day, Ada."
        assert greetings.__file__ == server.url + "greetings/__init__.py"
