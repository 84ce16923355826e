"""Signed, compressed module bundles: the listing, opening, publishing and
what a cold import of part of a large package costs (issue 15).

Attacks on the bytes served are in ``tests/attacks/test_bundle_attacks.py``;
here: the manifest rules that keep a listing consistent with its files
(THREATS P7, F1), the decompression cap (T8), and the behaviour that makes
the cost follow what is imported.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secure_import.config import BUNDLE_DIR
from secure_import.errors import FormatError, HashMismatchError, LengthMismatchError
from secure_import.hook.finder import get_finder
from secure_import.verify import manifest
from secure_import.verify.bundle import BundleEntry, make_bundle, open_bundle
from secure_import.verify.entries import FileEntry

from .conftest import Consumer, Publisher

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _entry(path: str, data: bytes) -> FileEntry:
    return FileEntry(path, hashlib.sha256(data).hexdigest(), len(data))


def _files(sources: dict[str, bytes]) -> dict[str, FileEntry]:
    return {path: _entry(path, data) for path, data in sources.items()}


SOURCES = {
    "pkg/__init__.py": b"from . import a\n",
    "pkg/a.py": b"A = 1\n",
    "pkg/sub/__init__.py": b"",
    "pkg/sub/b.py": b"B = 2\n",
    "other.py": b"O = 3\n",
}


def _payload(bundles: list[BundleEntry] | None, files: dict[str, FileEntry] | None = None) -> bytes:
    listed = _files(SOURCES) if files is None else files
    return manifest.build_payload(
        version=1,
        root_version=1,
        issued=NOW,
        expires=NOW + timedelta(days=1),
        provides=["pkg", "other"],
        files=listed.values(),
        bundles=bundles,
    )


def _raw_document(bundles: dict[str, Any]) -> bytes:
    document = json.loads(_payload([]))
    document["bundles"] = bundles
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _bundle(*paths: str, label: str = "pkg") -> tuple[BundleEntry, bytes]:
    files = _files(SOURCES)
    return make_bundle(label, [(files[p], SOURCES[p]) for p in paths])


# -- the signed listing -------------------------------------------------------


def test_v3_manifest_lists_bundles_and_round_trips_through_the_memo() -> None:
    bundle, _ = _bundle("pkg/__init__.py", "pkg/a.py")
    parsed = manifest.parse(_payload([bundle]))
    assert parsed.bundles == (bundle,)
    assert parsed.bundle_of("pkg/a.py") == bundle
    assert parsed.bundle_of("pkg/sub/b.py") is None
    again = manifest.from_plain(manifest.to_plain(parsed))
    assert again.bundles == (bundle,)
    assert again.bundle_of("pkg/__init__.py") == bundle


def test_manifests_before_v3_still_parse_and_list_no_bundles() -> None:
    """Backward compatible: a v1 manifest (no ``bundles`` field) is read as
    before; ``bundles`` is None, which means the earlier layout."""
    payload = _payload(None)
    assert json.loads(payload)["spec_version"] == 1
    parsed = manifest.parse(payload)
    assert parsed.bundles is None
    assert manifest.from_plain(manifest.to_plain(parsed)).bundles is None


def test_p7_bundles_field_in_a_v1_manifest_is_refused() -> None:
    bundle, _ = _bundle("pkg/a.py")
    document = json.loads(_payload(None))
    document["bundles"] = {bundle.path: {"sha256": bundle.sha256, "length": 1, "members": []}}
    with pytest.raises(FormatError, match="wrong set of fields"):
        manifest.parse(json.dumps(document, sort_keys=True).encode())


def _listing(bundle: BundleEntry, **change: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "sha256": bundle.sha256,
        "length": bundle.length,
        "members": list(bundle.members),
    }
    value.update(change)
    return {change.pop("_path", bundle.path): value}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": ["pkg/a.py", "pkg/missing.py"]}, "not a .py file of the manifest"),
        ({"members": ["other.py", "pkg/a.py"]}, "mixes top-level names"),
        ({"members": ["pkg/a.py", "pkg/__init__.py"]}, "sorted order"),
        ({"members": ["pkg/a.py", "pkg/a.py"]}, "sorted order"),
        ({"members": []}, "non-empty list"),
        ({"length": 0}, "length of bundle"),
        ({"length": True}, "length of bundle"),
        ({"sha256": "0" * 64}, "not named after its sha256"),
        ({"extra": 1}, "exactly sha256, length and members"),
    ],
)
def test_f1_bundle_inconsistent_with_the_files_refuses_the_manifest(
    change: dict[str, Any], message: str
) -> None:
    """A listing whose members are not files of the manifest, cross packages,
    repeat, or whose name does not carry its hash refuses the whole manifest."""
    bundle, _ = _bundle("pkg/__init__.py", "pkg/a.py")
    with pytest.raises(FormatError, match=message):
        manifest.parse(_raw_document(_listing(bundle, **change)))


def test_f1_a_file_in_two_bundles_refuses_the_manifest() -> None:
    first, _ = _bundle("pkg/__init__.py", "pkg/a.py")
    second, _ = _bundle("pkg/a.py", "pkg/sub/b.py", label="pkg.two")
    with pytest.raises(FormatError, match="member of two bundles"):
        manifest.parse(_raw_document({**_listing(first), **_listing(second)}))


@pytest.mark.parametrize(
    "path",
    ["elsewhere/pkg.{h}.zlib", f"{BUNDLE_DIR}/../pkg.{{h}}.zlib", f"{BUNDLE_DIR}/pkg.{{h}}.bin"],
)
def test_f4_bundle_path_outside_the_bundle_layout_refuses_the_manifest(path: str) -> None:
    bundle, _ = _bundle("pkg/a.py")
    listing = _listing(bundle)
    raw = {path.format(h=bundle.sha256[:32]): listing[bundle.path]}
    with pytest.raises(FormatError, match="bundle path must be"):
        manifest.parse(_raw_document(raw))


# -- opening a bundle ----------------------------------------------------------


def test_open_bundle_returns_each_verified_member() -> None:
    bundle, data = _bundle("pkg/__init__.py", "pkg/a.py")
    pieces = open_bundle(data, bundle, _files(SOURCES), url="https://x.test/b")
    assert pieces == {p: SOURCES[p] for p in ("pkg/__init__.py", "pkg/a.py")}


def test_t8_signed_bomb_is_stopped_at_the_members_signed_lengths() -> None:
    """T8: even a bundle the publisher's key signed cannot expand beyond its
    members' signed lengths: decompression stops there, memory stays bounded."""
    files = _files(SOURCES)
    bomb = zlib.compress(b"\0" * 200_000_000, 9)
    digest = hashlib.sha256(bomb).hexdigest()
    bundle = BundleEntry(
        f"{BUNDLE_DIR}/pkg.{digest[:32]}.zlib", digest, len(bomb), ("pkg/__init__.py", "pkg/a.py")
    )
    tracemalloc.start()
    try:
        with pytest.raises(LengthMismatchError, match="expands beyond") as info:
            open_bundle(bomb, bundle, files, url="https://x.test/bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.url == "https://x.test/bomb"
    assert peak < 2_000_000, f"decompression used {peak} bytes"


def test_signed_stream_that_falls_short_or_trails_is_refused() -> None:
    files = _files(SOURCES)
    for stream in (
        zlib.compress(SOURCES["pkg/a.py"]),  # one member short
        zlib.compress(SOURCES["pkg/__init__.py"] + SOURCES["pkg/a.py"]) + b"junk",
    ):
        digest = hashlib.sha256(stream).hexdigest()
        bundle = BundleEntry(
            f"{BUNDLE_DIR}/pkg.{digest[:32]}.zlib",
            digest,
            len(stream),
            ("pkg/__init__.py", "pkg/a.py"),
        )
        with pytest.raises(LengthMismatchError, match="exactly"):
            open_bundle(stream, bundle, files, url="https://x.test/b")


def test_signed_stream_with_wrong_member_bytes_names_the_member() -> None:
    files = _files(SOURCES)
    stream = zlib.compress(b"A = 9\n" + SOURCES["pkg/a.py"])
    digest = hashlib.sha256(stream).hexdigest()
    bundle = BundleEntry(
        f"{BUNDLE_DIR}/pkg.{digest[:32]}.zlib", digest, len(stream), ("pkg/a.py", "pkg/sub/b.py")
    )
    with pytest.raises(HashMismatchError, match=r"pkg/a\.py"):
        open_bundle(stream, bundle, files, url="https://x.test/b")


# -- publishing and importing ----------------------------------------------------


def _big(publisher: Publisher) -> None:
    """``big``: a package with three subpackages of five modules each."""
    publisher.write("big/__init__.py", "VERSION = 1\n")
    for sub in ("core", "extra", "tests"):
        publisher.write(f"big/{sub}/__init__.py", "from . import m0, m1, m2, m3, m4\n")
        for i in range(5):
            publisher.write(f"big/{sub}/m{i}.py", f"NAME = {sub!r}\nVALUE = {i}\n" + "#" * 200)


def _served_bytes(publisher: Publisher, paths: list[str]) -> int:
    return sum((publisher.out / p.lstrip("/")).stat().st_size for p in paths)


def test_importing_one_subpackage_fetches_only_its_bundles(
    publisher: Publisher, consumer: Consumer
) -> None:
    """Split publishing: ``import big.core`` requests ``big``'s and
    ``big/core``'s bundles and nothing of ``big/extra`` or ``big/tests``; the
    cache then holds exactly the verified members fetched."""
    _big(publisher)
    result = publisher.publish(split_above=0)
    assert result.manifest.bundles is not None
    labels = sorted(b.path.split("/")[1].rsplit(".", 2)[0] for b in result.manifest.bundles)
    assert labels == ["big", "big.core", "big.extra", "big.tests"]
    consumer.add()
    publisher.server.clear_requests()
    assert importlib.import_module("big.core").m4.NAME == "core"  # type: ignore[attr-defined]
    requested = publisher.request_paths()
    fetched_bundles = [p for p in requested if p.startswith(f"/{BUNDLE_DIR}/")]
    core = result.manifest.bundle_of("big/core/m0.py")
    assert core is not None and fetched_bundles == [f"/{core.path}"]
    assert not any("extra" in p or "tests" in p for p in requested), requested
    assert "big.extra" not in sys.modules
    cached = consumer.cached_objects()
    consumer.assert_cache_verified()
    members = {result.manifest.files[m].sha256 for m in core.members}
    members.add(result.manifest.files["big/__init__.py"].sha256)
    assert set(cached) == members
    # Bytes on the wire: the compressed core bundle is smaller than its members.
    assert core.length < sum(result.manifest.files[m].length for m in core.members)


def test_small_package_is_one_compressed_request(publisher: Publisher, consumer: Consumer) -> None:
    """Below the split threshold a package is one bundle: one request cold."""
    _big(publisher)
    result = publisher.publish()
    assert result.manifest.bundles is not None and len(result.manifest.bundles) == 1
    consumer.add()
    publisher.server.clear_requests()
    importlib.import_module("big.core")
    bundles = [p for p in publisher.request_paths() if p.startswith(f"/{BUNDLE_DIR}/")]
    assert len(bundles) == 1
    files = [p for p in publisher.request_paths() if p.endswith(".py")]
    assert files == []
    whole = sum(e.length for e in result.manifest.files.values() if e.path.endswith(".py"))
    assert _served_bytes(publisher, bundles) < whole / 2


def test_memory_follows_imports_on_a_warm_start(publisher: Publisher, consumer: Consumer) -> None:
    """No code object of a never-imported subpackage is loaded or kept: after
    ``import big.core`` in a cold and then a warm process, the assembler has
    verified only the units of ``big`` and ``big/core``."""
    _big(publisher)
    result = publisher.publish(split_above=0)
    for _ in range(3):  # cold, warm (module bytecode), warm (bytecode packs)
        repo = consumer.new_process()
        importlib.import_module("big.core")
        assembler = repo.assembly
        units = set(assembler._ready)
        core = result.manifest.bundle_of("big/core/m0.py")
        top = result.manifest.bundle_of("big/__init__.py")
        assert core is not None and top is not None
        assert units == {core.path, top.path}, units
        assert not any("/extra/" in p or "/tests/" in p for p in assembler._ready_paths)
        assert not any("/extra/" in path for _, path in assembler._code)
        assert "big.extra" not in sys.modules


def test_legacy_site_keeps_working(publisher: Publisher, consumer: Consumer) -> None:
    """A site signed for consumers that predate bundles (``bundles='legacy'``:
    a v1 manifest and the unsigned per-package bundle) imports as before."""
    _big(publisher)
    result = publisher.publish(bundles="legacy")
    assert result.manifest.bundles is None
    envelope = json.loads(publisher.manifest_bytes())
    assert json.loads(base64.b64decode(envelope["payload"]))["spec_version"] == 1
    consumer.add()
    publisher.server.clear_requests()
    assert importlib.import_module("big.extra").m1.VALUE == 1  # type: ignore[attr-defined]
    bundles = [p for p in publisher.request_paths() if p.startswith(f"/{BUNDLE_DIR}/")]
    assert len(bundles) == 1 and bundles[0].endswith(".bin")
    consumer.assert_cache_verified()


def test_sign_cli_bundle_options(tmp_path: Path) -> None:
    """``secure-import sign --bundles whole|split|legacy --split-above BYTES``."""
    from secure_import.cli import main
    from secure_import.store.keyfiles import generate_keypair

    src = tmp_path / "src"
    for rel in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/x.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("X = 1\n")
    key, _ = generate_keypair("k", tmp_path / "keys")
    counts = {}
    for mode in ("whole", "split", "legacy"):
        out = tmp_path / f"out-{mode}"
        args = ["sign", str(src), "--key", str(key), "--out", str(out), "--bundles", mode]
        assert main([*args, "--split-above", "0"]) == 0
        env = json.loads((out / "secure-import-manifest.json").read_bytes())
        document = json.loads(base64.b64decode(env["payload"]))
        counts[mode] = (document["spec_version"], len(document.get("bundles", {})))
        assert len(list((out / BUNDLE_DIR).iterdir())) == max(1, counts[mode][1])
    assert counts == {"whole": (3, 1), "split": (3, 2), "legacy": (1, 0)}
    assert get_finder() is not None
