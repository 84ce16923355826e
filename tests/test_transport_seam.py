"""The transport seam (:mod:`secure_import.transport.base`): a Repository
over an in-memory transport double that serves a signed site from a dict.

Real HTTPS is the rule for integration tests (tests/test_import_https.py and
tests/attacks/); this file proves the seam a second transport (a mirror, an
object store) plugs into: the trust code is the same, every byte the double
returns is verified, and the double's failures map onto the same refusals,
audit records and cache state as the HTTPS client's.  No network is used.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from secure_import.config import BUNDLE_DIR, MANIFEST_NAME
from secure_import.errors import ConnectionFailedError, HashMismatchError, LengthMismatchError
from secure_import.store.audit import AuditLog
from secure_import.verify.pointer import POINTER_NAME

from .memsite import BASE, Site


@pytest.fixture
def site(tmp_path: Path, canary: Path) -> Site:
    return Site(tmp_path, canary)


def test_a_repository_imports_through_an_injected_transport_without_the_https_stack(
    site: Site, monkeypatch: pytest.MonkeyPatch, canary: Path
) -> None:
    def no_https() -> None:
        raise AssertionError("the HTTPS stack was loaded for an injected transport")

    monkeypatch.setattr("secure_import.transport.https.load_network_stack", no_https)
    monkeypatch.setattr("secure_import.repository.start_network", no_https)
    monkeypatch.setattr("secure_import.repository.Repository._connect_https", no_https)
    repo = site.repository()
    pkg = importlib.import_module("pkg")
    armed = importlib.import_module("armed")
    assert [pkg.a.NAME, pkg.b.NAME, pkg.c.NAME, armed.VALUE] == ["a", "b", "c", 42]
    assert canary.exists()  # the signed module ran: the double's bytes were used
    (double,) = site.transports
    assert repo.fetcher is double
    served = [rel for rel, _ in double.served]
    assert served[0] == MANIFEST_NAME
    assert any(rel.startswith(BUNDLE_DIR + "/") for rel in served)  # cold package: one bundle
    assert double.stats.requests == len(double.served)
    loads = [r["module"] for r in site.audit() if r["event"] == "load"]
    assert {"pkg", "pkg.a", "pkg.b", "pkg.c", "armed"} <= set(loads)
    site.assert_cache_verified()
    repo.close()
    assert double.closed


def test_the_next_process_asks_the_pointer_once_and_uses_the_cache(site: Site) -> None:
    site.repository()
    importlib.import_module("pkg")
    site.repository()
    importlib.import_module("pkg")
    second = site.transports[-1]
    # The publisher's pointer names the cached manifest: nothing else is asked,
    # and no validator is sent (THREATS H5, H6).
    assert second.served == [(POINTER_NAME, None)]
    outcomes = [r["outcome"] for r in site.audit() if r["event"] == "manifest"]
    assert outcomes == ["ok", "ok"]


def test_a_missing_bundle_404_falls_back_to_file_by_file(site: Site) -> None:
    site.files = {k: v for k, v in site.files.items() if not k.startswith(BUNDLE_DIR + "/")}
    site.repository()
    assert importlib.import_module("pkg").b.NAME == "b"
    served = [rel for rel, _ in site.transports[-1].served]
    assert {"pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py"} <= set(served)
    site.assert_cache_verified()


def test_f2_a_body_past_the_signed_length_maps_to_a_length_mismatch(
    site: Site, canary: Path
) -> None:
    """The double raises TooLargeError at the cap, as the HTTPS client does;
    the repository reports the signed length, runs nothing and caches nothing."""
    site.files = {k: v for k, v in site.files.items() if not k.startswith(BUNDLE_DIR + "/")}
    site.files["armed.py"] = site.files["armed.py"] + b"# extra\n"
    site.repository()
    with pytest.raises(LengthMismatchError) as caught:
        importlib.import_module("armed")
    assert caught.value.url == BASE + "armed.py"
    assert not canary.exists()
    assert hashlib.sha256(site.files["armed.py"]).hexdigest() not in site.cached_objects()
    refusals = [r for r in site.audit() if r["event"] == "refuse"]
    assert [r["code"] for r in refusals] == ["length-mismatch"]
    site.assert_cache_verified()


def test_f1_tampered_bytes_from_the_transport_are_refused(site: Site, canary: Path) -> None:
    site.files = {k: v for k, v in site.files.items() if not k.startswith(BUNDLE_DIR + "/")}
    original = site.files["armed.py"]
    site.files["armed.py"] = original.replace(b"42", b"66")
    site.repository()
    with pytest.raises(HashMismatchError):
        importlib.import_module("armed")
    assert not canary.exists()
    assert [r["code"] for r in site.audit() if r["event"] == "refuse"] == ["hash-mismatch"]
    site.assert_cache_verified()


def test_t10_an_unreachable_server_without_a_cache_is_a_transport_refusal(site: Site) -> None:
    site.failures[MANIFEST_NAME] = ConnectionFailedError(
        "connection refused", check="connection", url=BASE + MANIFEST_NAME
    )
    site.repository()
    with pytest.raises(ConnectionFailedError):
        importlib.import_module("pkg")
    assert site.cached_objects() == {}
    assert [r["code"] for r in site.audit() if r["event"] == "refuse"] == ["connection-failed"]


def test_t10_an_unreachable_server_falls_back_to_the_verified_cache_and_audits_it(
    site: Site,
) -> None:
    site.repository()
    importlib.import_module("pkg")
    for rel in (POINTER_NAME, MANIFEST_NAME):  # the whole server is unreachable
        site.failures[rel] = ConnectionFailedError(
            "connection refused", check="connection", url=BASE + rel
        )
    site.repository()
    assert importlib.import_module("pkg").c.NAME == "c"
    records = [r for r in site.audit() if r["event"] == "manifest"]
    assert [r["outcome"] for r in records] == ["ok", "offline"]
    assert "connection refused" in str(records[-1]["message"])


def test_injected_stores_are_the_ones_written(site: Site, tmp_path: Path) -> None:
    elsewhere = AuditLog(tmp_path / "other-log" / "audit.jsonl")
    site.repository(audit=elsewhere)
    importlib.import_module("pkg")
    assert any(r["event"] == "load" for r in elsewhere.records())
    assert not site.paths.audit_log.exists()
