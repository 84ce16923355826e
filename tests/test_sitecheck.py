"""``secure-import verify`` checks every artifact a client may fetch (issue 14,
issue 16): package bundles, the manifest pointer and the Sigstore bundle, not
only the loose files.  A site that cold imports refuse must not pass.

THREATS F1/F2 (a bundle altered or cut, its loose files intact), H6 (a stale
pointer: every client holding the envelope it names keeps it as current).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from secure_import.config import BUNDLE_DIR, MANIFEST_PAYLOAD_NAME, SIGSTORE_BUNDLE_NAME
from secure_import.errors import SecureImportError
from secure_import.publish.sitecheck import verify_repository
from secure_import.store.keyfiles import load_public_key_file
from secure_import.verify.pointer import POINTER_NAME, make_pointer

from .clirunner import run_cli, run_json
from .conftest import Consumer, Publisher


def publish_package(publisher: Publisher, value: int = 1) -> None:
    """``victim``: a package of four modules, so cold imports use its bundle."""
    publisher.write("victim/__init__.py", "from . import a, b, c\n")
    for name in ("a", "b", "c"):
        publisher.write(f"victim/{name}.py", f"{name.upper()} = {value}\n")
    publisher.publish()


def bundle_files(publisher: Publisher) -> list[Path]:
    return sorted(p for p in (publisher.out / BUNDLE_DIR).iterdir() if p.is_file())


def verify_json(tmp: Path, site: Path | str, publisher: Publisher, expect: int) -> Any:
    args: list[str | Path] = ["verify", site, "--key", publisher.pub_path]
    if isinstance(site, str):
        args += ["--ca-bundle", publisher.rig.ca_pem_path]
    return run_json(tmp, *args, expect=expect)


def test_a_complete_site_passes_with_its_bundles_and_pointer_checked(
    publisher: Publisher, tmp_path: Path
) -> None:
    publish_package(publisher)
    report = verify_json(tmp_path, publisher.out, publisher, expect=0)
    assert report["ok"] and report["failures"] == []
    assert report["bundles_checked"] == len(bundle_files(publisher)) >= 1
    assert report["notes"] == []


@pytest.mark.parametrize("where", ["local", "https"])
def test_f1_verify_refuses_the_corrupt_bundle_site_that_imports_refuse(
    publisher: Publisher, consumer: Consumer, tmp_path: Path, where: str
) -> None:
    """One byte of the bundle changed, every loose file intact: a cold import
    is refused (naming the bundle's URL), and so is the site by ``verify``,
    which used to pass it because it read only the loose files."""
    publish_package(publisher)
    (bundle,) = bundle_files(publisher)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))

    consumer.add()
    with pytest.raises(SecureImportError) as info:
        importlib.import_module("victim")
    assert info.value.url is not None and info.value.url.endswith(bundle.name)

    site: Path | str = publisher.out if where == "local" else publisher.url
    report = verify_json(tmp_path, site, publisher, expect=1)
    assert not report["ok"]
    assert report["files_checked"] == 4  # the loose files are fine...
    (failure,) = report["failures"]  # ...one clear failure: the bundle
    assert failure["code"] in ("hash-mismatch", "length-mismatch")
    assert failure["url"].endswith(f"{BUNDLE_DIR}/{bundle.name}")
    human = run_cli(tmp_path, "verify", publisher.out, "--key", publisher.pub_path)
    assert human.returncode == 1
    assert "FAIL" in human.stdout and bundle.name in human.stdout


def test_f2_a_truncated_bundle_is_refused_by_verify(publisher: Publisher, tmp_path: Path) -> None:
    publish_package(publisher)
    (bundle,) = bundle_files(publisher)
    bundle.write_bytes(bundle.read_bytes()[:-3])
    report = verify_json(tmp_path, publisher.out, publisher, expect=1)
    (failure,) = report["failures"]
    assert failure["code"] in ("length-mismatch", "hash-mismatch")
    assert failure["url"].endswith(bundle.name)


def test_h6_a_stale_pointer_is_refused_by_verify_and_freezes_clients_without_it(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    """The pointer left at version 1 after version 2 was published: a client
    holding version 1 is told it is current (it keeps running version 1),
    which is why ``verify`` refuses the site and names both envelopes."""
    publish_package(publisher, 1)
    old_pointer = (publisher.out / POINTER_NAME).read_bytes()
    consumer.add()
    assert importlib.import_module("victim").a.A == 1
    publish_package(publisher, 2)
    (publisher.out / POINTER_NAME).write_bytes(old_pointer)

    consumer.new_process()
    assert importlib.import_module("victim").a.A == 1  # frozen by the stale pointer

    report = verify_json(tmp_path, publisher.out, publisher, expect=1)
    (failure,) = report["failures"]
    assert failure["code"] == "hash-mismatch"
    assert failure["check"] == "pointer"
    assert failure["url"].endswith(POINTER_NAME)
    assert "version 2" in failure["expected"] and "version 1" in failure["got"]


def test_a_malformed_pointer_is_refused_and_a_missing_one_is_a_note(
    publisher: Publisher, tmp_path: Path
) -> None:
    publish_package(publisher)
    pointer = publisher.out / POINTER_NAME
    pointer.write_bytes(b'{"format": "something else"}')
    report = verify_json(tmp_path, publisher.out, publisher, expect=1)
    assert [f["code"] for f in report["failures"]] == ["format-error"]

    pointer.unlink()
    for bundle in bundle_files(publisher):
        bundle.unlink()
    report = verify_json(tmp_path, publisher.out, publisher, expect=0)
    assert report["ok"] and report["bundles_checked"] == 0
    assert any(POINTER_NAME in note for note in report["notes"])
    assert any("file by file" in note for note in report["notes"])


def test_a_pointer_naming_the_envelope_with_another_version_is_refused(
    publisher: Publisher, tmp_path: Path
) -> None:
    publish_package(publisher)
    envelope = publisher.manifest_bytes()
    (publisher.out / POINTER_NAME).write_bytes(make_pointer(envelope, 7))
    report = verify_json(tmp_path, publisher.out, publisher, expect=1)
    assert [f["check"] for f in report["failures"]] == ["pointer-version"]


def test_a_published_sigstore_bundle_that_does_not_verify_is_refused(
    publisher: Publisher, tmp_path: Path
) -> None:
    """A key-signed site that also publishes a Sigstore bundle: clients that
    pin an identity would fetch it, so it must verify over the payload (and
    the payload file must be the envelope's), even when ``verify`` is run
    with keys only."""
    publish_package(publisher)
    (publisher.out / SIGSTORE_BUNDLE_NAME).write_text(json.dumps({"mediaType": "nonsense"}))
    keys = [load_public_key_file(publisher.pub_path)]
    report = verify_repository(str(publisher.out), keys=keys)
    assert [f.code for f in report.failures] == ["bad-sigstore-bundle"]
    assert str(report.failures[0].url).endswith(SIGSTORE_BUNDLE_NAME)

    # The payload file third parties verify must be the envelope's payload.
    (publisher.out / MANIFEST_PAYLOAD_NAME).write_bytes(b'{"other": "payload"}')
    report = verify_repository(str(publisher.out), keys=keys)
    assert sorted(f.code for f in report.failures) == ["bad-sigstore-bundle", "format-error"]
    mismatch = next(f for f in report.failures if f.code == "format-error")
    assert mismatch.check == "payload-file"
