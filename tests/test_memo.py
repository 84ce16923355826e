"""The manifest memo (:mod:`secure_import.store.memo`), end to end over real HTTPS.

A memo lets a later process skip the signature check and parse of a manifest
envelope it already authenticated.  These tests hold it to its invariants: it
only ever stands in for a signature that really verified under the same root,
a forged or misplaced memo is deleted and never trusted, and every decision
that depends on time or local state (expiry, rollback) is still taken.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import marshal
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME, Limits
from secure_import.errors import ExpiredError, OfflineError, RollbackError, ThresholdError
from secure_import.publish.sign import publish, rotate_root
from secure_import.store import memo as memo_mod
from secure_import.store.cache import Cache
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.store.memo import MEMO_DIR, ManifestMemo
from secure_import.store.sealed import FORMAT, SealedStore
from secure_import.verify import manifest as manifest_mod
from secure_import.verify.trust import authenticate_manifest

from .attacks.conftest import Scenario, import_victim
from .conftest import Consumer, Publisher, canary_code


@pytest.fixture
def scenario(publisher: Publisher, consumer: Consumer, canary: Path, tmp_path: Path) -> Scenario:
    return Scenario(publisher, consumer, canary, tmp_path)


#: Where the trust state looks up the signature check (patched to observe it).
AUTHENTICATE = "secure_import.verify.trustset.authenticate_manifest"


# -- helpers -------------------------------------------------------------------


def publish_armed(scenario: Scenario, **kwargs: Any) -> None:
    """The baseline repository plus ``armed``, a signed module that writes the
    canary when it runs: a refused manifest must keep even genuine code from running."""
    scenario.publisher.write("armed.py", canary_code(scenario.canary))
    scenario.publish_baseline(**kwargs)


def warm_offline_ready(scenario: Scenario) -> secure_import.Repository:
    """Accept the repository and cache every file without running any, so an
    offline run that wrongly accepted the manifest would run ``armed``."""
    repo = scenario.warm()
    repo.prefetch()
    return repo


def import_armed() -> object:
    return importlib.import_module("armed")


def import_good() -> object:
    return importlib.import_module("good")


def memo_dir(consumer: Consumer) -> Path:
    return consumer.paths.cache_dir / MEMO_DIR


def memo_files(consumer: Consumer) -> dict[str, bytes]:
    """Every manifest memo on disk, by file name."""
    directory = memo_dir(consumer)
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.glob("manifest-*"))}


def memo_name(repo: secure_import.Repository, envelope: bytes) -> str:
    """The file name of the memo of ``envelope`` under ``repo``'s current root."""
    digest = hashlib.sha256(envelope).hexdigest()
    return repo.memo.name_for(repo.current_root(), digest)


def count_authentications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every envelope whose signatures the repository checks from now on."""
    seen: list[bytes] = []
    real = authenticate_manifest

    def counting(envelope: bytes, **kwargs: Any) -> Any:
        seen.append(envelope)
        return real(envelope, **kwargs)

    monkeypatch.setattr(AUTHENTICATE, counting)
    return seen


def forbid_authentication(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, verifying a manifest's signatures fails the test: the memo must answer."""

    def forbidden(envelope: bytes, **kwargs: Any) -> Any:
        raise AssertionError("the manifest's signatures were verified again despite its memo")

    monkeypatch.setattr(AUTHENTICATE, forbidden)


def publish_v1_then_v2(scenario: Scenario) -> tuple[bytes, bytes, secure_import.Repository]:
    """Accept version 1, then version 2, high-water 2.  Accepting v2 replaces
    v1's memo; the attacker then restores v1's genuine memo (from a backup, a
    synced copy...), so a genuine memo exists for each."""
    publish_armed(scenario)
    v1 = scenario.publisher.manifest_bytes()
    first = scenario.warm()
    v1_memo = memo_dir(scenario.consumer) / memo_name(first, v1)
    v1_backup = v1_memo.read_bytes()
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()
    v2 = scenario.publisher.manifest_bytes()
    repo = scenario.consumer.new_process()
    import_good()
    repo.prefetch()
    assert set(memo_files(scenario.consumer)) == {memo_name(repo, v2)}  # v1's was replaced
    v1_memo.write_bytes(v1_backup)
    v1_memo.chmod(0o600)
    return v1, v2, repo


# -- the memo works --------------------------------------------------------------


def test_accepted_manifest_is_remembered_and_not_verified_again(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    envelope = scenario.publisher.manifest_bytes()
    memos = memo_files(scenario.consumer)
    assert list(memos) == [memo_name(repo, envelope)]

    forbid_authentication(monkeypatch)
    scenario.consumer.new_process(offline=True)
    assert import_good().VALUE == 1  # type: ignore[attr-defined]

    assert memo_files(scenario.consumer) == memos  # used as is, not rewritten
    manifest_records = [r for r in scenario.consumer.audit() if r["event"] == "manifest"]
    assert manifest_records[-1]["outcome"] == "offline"
    assert manifest_records[-1]["sha256"] == hashlib.sha256(envelope).hexdigest()
    assert scenario.consumer.refusals() == []
    assert not scenario.canary.exists()


def test_without_its_memo_the_manifest_is_verified_again_and_remembered(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    envelope = scenario.publisher.manifest_bytes()
    (only,) = memo_files(scenario.consumer)
    (memo_dir(scenario.consumer) / only).unlink()

    checked = count_authentications(monkeypatch)
    scenario.consumer.new_process(offline=True)
    assert import_good().VALUE == 1  # type: ignore[attr-defined]

    assert checked == [envelope]
    assert list(memo_files(scenario.consumer)) == [memo_name(repo, envelope)]
    assert scenario.consumer.refusals() == []


# -- only an accepted manifest is remembered ---------------------------------------


def test_expired_manifest_leaves_no_memo(scenario: Scenario) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    publish_armed(scenario, now=long_ago, expires_in=timedelta(days=1))
    scenario.consumer.add()
    scenario.refused(import_armed, ExpiredError, "expired")
    assert memo_files(scenario.consumer) == {}


def test_rolled_back_manifest_leaves_no_memo(scenario: Scenario) -> None:
    publish_armed(scenario)
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish()  # version 2; the consumer never sees version 1
    repo = scenario.warm()
    v2_memo = memo_files(scenario.consumer)
    assert list(v2_memo) == [memo_name(repo, scenario.publisher.manifest_bytes())]

    scenario.publisher.serve_snapshot(1)
    v1 = scenario.publisher.manifest_bytes()
    repo = scenario.consumer.new_process()
    scenario.refused(import_armed, RollbackError, "rollback")

    assert memo_files(scenario.consumer) == v2_memo
    assert not (memo_dir(scenario.consumer) / memo_name(repo, v1)).exists()


def test_manifest_refused_because_its_root_expired_leaves_no_memo(scenario: Scenario) -> None:
    publish_armed(scenario)
    scenario.warm()
    memos = memo_files(scenario.consumer)
    new_key_path, _ = generate_keypair("rotated", scenario.tmp / "rotated-keys")
    new_key = load_private_key_file(new_key_path)
    rotate_root(
        scenario.publisher.out,
        old_keys=[scenario.publisher.private_key],
        new_keys=[new_key],
        expires_in=timedelta(days=1),
    )
    scenario.publisher.publish(private_keys=[new_key], expires_in=timedelta(days=10))
    later = datetime.now(UTC) + timedelta(days=2)  # root 2 expired, manifest 2 is not

    def clock() -> datetime:
        return later

    scenario.consumer.new_process(clock=clock)
    records_before = len(scenario.consumer.refusals())
    with pytest.raises(ExpiredError) as info:
        import_armed()

    assert info.value.code == "expired" and info.value.check == "root-expiry"
    assert not scenario.canary.exists()
    assert [r["code"] for r in scenario.consumer.refusals()[records_before:]] == ["expired"]
    assert memo_files(scenario.consumer) == memos, "a refused manifest was remembered"


# -- a memo never stands in for a signature ------------------------------------------


def forge_signed_repository(scenario: Scenario) -> tuple[bytes, manifest_mod.Manifest]:
    """Version 2 of the repository, signed by the attacker's own key, whose
    ``victim`` writes the canary; its files are planted in the cache."""
    key_path, _ = generate_keypair("attacker", scenario.tmp / "attacker-keys")
    src, out = scenario.tmp / "attacker-src", scenario.tmp / "attacker-repo"
    (src / "victim").mkdir(parents=True)
    (src / "good.py").write_text("VALUE = 1\n")
    (src / "victim" / "__init__.py").write_bytes(scenario.evil("OK = True\n"))
    result = publish(src, out, private_keys=[load_private_key_file(key_path)], version=2)
    cache = Cache(scenario.consumer.paths.cache_dir)
    for entry in result.manifest.files.values():
        cache.put(entry.sha256, (out / entry.path).read_bytes())
    return (out / MANIFEST_NAME).read_bytes(), result.manifest


def test_forged_memo_for_an_attacker_signed_manifest_is_refused_and_deleted(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()  # high-water 1, the sealing key exists in the state dir
    forged_envelope, forged_manifest = forge_signed_repository(scenario)
    # The attacker writes the cache directory: the envelope, and a memo claiming
    # that it authenticated under the victim's root, sealed with a key of their own.
    Cache(scenario.consumer.paths.cache_dir).put_metadata(repo.id, MANIFEST_NAME, forged_envelope)
    root = repo.current_root()
    bound = memo_mod._binding(root, hashlib.sha256(forged_envelope).hexdigest())
    body = marshal.dumps((manifest_mod.to_plain(forged_manifest), tuple(sorted(root.key_ids))))
    mac = hmac.digest(secrets.token_bytes(32), bound + body, "sha256")
    forged_memo = memo_dir(scenario.consumer) / repo.memo.name_for(
        root, hashlib.sha256(forged_envelope).hexdigest()
    )
    forged_memo.write_bytes(FORMAT + mac + body)
    before = {
        path: data
        for path, data in scenario.consumer.snapshot().items()
        if path != str(forged_memo)  # must be gone afterwards (else: "written")
    }

    scenario.consumer.new_process(offline=True)
    scenario.refused(import_victim, ThresholdError, "threshold-not-met", before=before)

    assert not forged_memo.exists()
    assert list(memo_files(scenario.consumer)) == [
        memo_name(repo, scenario.publisher.manifest_bytes())
    ]


def test_memo_sealed_for_another_envelope_is_deleted_and_rewritten(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2, repo = publish_v1_then_v2(scenario)
    v1_path = memo_dir(scenario.consumer) / memo_name(repo, v1)
    v2_path = memo_dir(scenario.consumer) / memo_name(repo, v2)
    genuine_v1 = v1_path.read_bytes()
    v2_path.write_bytes(genuine_v1)  # genuine, sealed with the right key, for v1's digest

    discarded: list[str] = []
    real_discard = SealedStore.discard

    def spy(self: SealedStore, name: str) -> None:
        discarded.append(name)
        real_discard(self, name)

    monkeypatch.setattr(SealedStore, "discard", spy)
    checked = count_authentications(monkeypatch)
    scenario.consumer.new_process(offline=True)
    assert import_good().VALUE == 1  # type: ignore[attr-defined]

    # The misplaced memo is dropped unread; then rewriting v2's memo replaces
    # the repository's older memos (v1's).
    assert discarded == [v2_path.name, v1_path.name]
    assert checked == [v2]  # verified from scratch
    assert v2_path.read_bytes() != genuine_v1
    assert not v1_path.exists()
    paths = scenario.consumer.paths
    rewritten = ManifestMemo(paths.cache_dir, paths.state_dir, owner=repo.id).load(
        repo.current_root(), hashlib.sha256(v2).hexdigest()
    )
    assert rewritten is not None and rewritten[0].version == 2
    assert scenario.consumer.refusals() == []


# -- a genuine memo does not skip what depends on time or local state -----------------


@pytest.mark.parametrize("how", ["served", "planted-in-cache"])
def test_genuine_memo_of_an_older_manifest_does_not_reopen_rollback(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    v1, _, repo = publish_v1_then_v2(scenario)
    if how == "served":
        scenario.publisher.serve_snapshot(1)
    else:
        Cache(scenario.consumer.paths.cache_dir).put_metadata(repo.id, MANIFEST_NAME, v1)
    memos = memo_files(scenario.consumer)

    forbid_authentication(monkeypatch)  # v1's genuine memo is what answers
    scenario.consumer.new_process(offline=how != "served")
    exc = scenario.refused(import_armed, RollbackError, "rollback")

    assert exc.got == 1
    assert memo_files(scenario.consumer) == memos  # genuine: kept, but not obeyed


def test_memo_does_not_outlive_the_keys_it_was_made_under(scenario: Scenario) -> None:
    publish_armed(scenario)
    warm_offline_ready(scenario)
    memos = memo_files(scenario.consumer)
    assert len(memos) == 1
    _, other_pub = generate_keypair("other", scenario.tmp / "other-keys")

    # Pinned to other keys, the repository has state, cache and memo of its
    # own (issue 14): offline, it has no cached manifest at all, and the
    # memo made under the first keys is neither used nor touched.
    scenario.consumer.new_process(keys=[other_pub], offline=True)
    scenario.refused(import_armed, OfflineError, "offline")

    assert memo_files(scenario.consumer) == memos


def test_memo_does_not_skip_expiry(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    expires_in = timedelta(days=1)
    publish_armed(scenario, expires_in=expires_in)
    warm_offline_ready(scenario)
    memos = memo_files(scenario.consumer)
    assert len(memos) == 1
    later = datetime.now(UTC) + expires_in + Limits().clock_slack + timedelta(minutes=1)

    def clock() -> datetime:
        return later

    forbid_authentication(monkeypatch)  # the memo answers; expiry must still be checked
    scenario.consumer.new_process(clock=clock, offline=True)
    exc = scenario.refused(import_armed, ExpiredError, "expired")

    assert exc.check == "expiry"
    assert memo_files(scenario.consumer) == memos


def test_memo_whose_file_columns_do_not_line_up_is_deleted_and_verified_again(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memo sealed with the genuine key but holding file columns of
    different lengths (a bug, not an attacker) is never half-used: deleted,
    and the envelope is verified from scratch."""
    publish_armed(scenario)
    repo = scenario.warm()
    envelope = scenario.publisher.manifest_bytes()
    root, digest = repo.current_root(), hashlib.sha256(envelope).hexdigest()
    version, root_version, issued, expires, provides, (paths, digests, lengths), req, bun = (
        manifest_mod.to_plain(repo.manifest)
    )
    broken = (
        version,
        root_version,
        issued,
        expires,
        provides,
        (paths, digests[:-1], lengths),
        req,
        bun,
    )
    store = SealedStore(
        memo_dir(scenario.consumer),
        cache_dir=scenario.consumer.paths.cache_dir,
        state_dir=scenario.consumer.paths.state_dir,
    )
    name = memo_name(repo, envelope)
    bound = memo_mod._binding(root, digest)
    assert store.seal(name, bound, marshal.dumps((broken, tuple(sorted(root.key_ids)))))
    seen = count_authentications(monkeypatch)

    scenario.consumer.new_process(offline=True)
    import_good()

    assert seen == [envelope]  # verified in full, not taken from the broken memo
    fresh = ManifestMemo(  # rewritten from the full verification
        scenario.consumer.paths.cache_dir, scenario.consumer.paths.state_dir, owner=repo.id
    ).load(root, digest)
    assert fresh is not None and fresh[0] == repo.manifest
