"""The ordered trust state (:mod:`secure_import.verify.trustset`), driven with bytes only.

No network, no disk, no clock: every envelope and root is built in memory, the
time is a constant, and each test feeds one attack (ids from THREATS.md) to a
fresh :class:`TrustState` and checks the verdict and the state left behind.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.errors import (
    EquivocationError,
    ExpiredError,
    FastForwardError,
    FormatError,
    LockMismatchError,
    RollbackError,
    RootRotationError,
    SignatureError,
    ThresholdError,
)
from secure_import.verify import envelope
from secure_import.verify import root as rootmod
from secure_import.verify.keys import public_key_of
from secure_import.verify.manifest import FileEntry, Manifest, build_payload
from secure_import.verify.root import Root
from secure_import.verify.trust import HighWater
from secure_import.verify.trustset import Candidate, Rotation, TrustOrderError, TrustState

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
SLACK = timedelta(minutes=5)
JUMP = 1000
URL = "https://example.test/repo/secure-import-manifest.json"

KEY_A = Ed25519PrivateKey.generate()
KEY_B = Ed25519PrivateKey.generate()
KEY_C = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()

ROOT_1 = Root.from_keys([public_key_of(KEY_A)])
ENTRY = FileEntry("good.py", hashlib.sha256(b"x = 1\n").hexdigest(), 6)


def manifest_envelope(
    version: int,
    *,
    keys: tuple[Ed25519PrivateKey, ...] = (KEY_A,),
    root_version: int = 1,
    expires: datetime = NOW + timedelta(days=30),
    files: tuple[FileEntry, ...] = (ENTRY,),
) -> bytes:
    payload = build_payload(
        version=version,
        root_version=root_version,
        issued=min(NOW, expires) - timedelta(days=1),
        expires=expires,
        provides=["good"],
        files=files,
    )
    return envelope.sign(payload, envelope.MANIFEST_PAYLOAD_TYPE, list(keys))


def root_envelope(
    version: int,
    new_keys: tuple[Ed25519PrivateKey, ...],
    signers: tuple[Ed25519PrivateKey, ...],
    *,
    expires: datetime = rootmod.FAR_FUTURE,
) -> bytes:
    new = Root.from_keys([public_key_of(k) for k in new_keys], version=version, expires=expires)
    return envelope.sign(rootmod.build_payload(new), envelope.ROOT_PAYLOAD_TYPE, list(signers))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state(
    *,
    high_water: HighWater | None = None,
    now: datetime = NOW,
    locked_digest: str | None = None,
    pinned: Root = ROOT_1,
) -> TrustState:
    return TrustState(
        pinned,
        high_water=high_water,
        now=now,
        clock_slack=SLACK,
        max_version_jump=JUMP,
        url=URL,
        locked_digest=locked_digest,
    )


def assert_nothing_accepted(trust: TrustState, high_water: HighWater | None) -> None:
    assert trust.accepted is None
    assert trust.high_water == high_water


# -- the ordinary update -------------------------------------------------------


def test_a_fresh_signed_manifest_is_accepted_and_moves_the_high_water_mark() -> None:
    data = manifest_envelope(3)
    trust = state(high_water=HighWater(2, "0" * 64))
    verdict = trust.accept(trust.verify(data))
    assert verdict.trusted.manifest.version == 3
    assert verdict.trusted.envelope_digest == digest(data)
    assert verdict.trusted.key_ids == {public_key_of(KEY_A).key_id}
    assert verdict.new_high_water == HighWater(3, digest(data))
    assert verdict.root == ROOT_1
    assert verdict.remember  # checked now, so worth remembering
    assert trust.accepted is verdict.trusted
    assert trust.high_water == HighWater(3, digest(data))


def test_the_same_manifest_again_is_accepted_without_moving_the_high_water_mark() -> None:
    data = manifest_envelope(3)
    mark = HighWater(3, digest(data))
    trust = state(high_water=mark)
    verdict = trust.accept(trust.verify(data))
    assert verdict.new_high_water is None  # nothing for the caller to write
    assert trust.high_water == mark


def test_first_contact_sets_the_high_water_mark() -> None:
    data = manifest_envelope(1)
    verdict = (trust := state()).accept(trust.verify(data))
    assert verdict.new_high_water == HighWater(1, digest(data))


# -- signatures ----------------------------------------------------------------


def test_m1_one_changed_byte_of_the_envelope_is_refused() -> None:
    data = bytearray(manifest_envelope(2))
    at = data.index(b'"payload":"') + len(b'"payload":"') + 20
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    trust = state()
    with pytest.raises((SignatureError, FormatError)):
        trust.verify(bytes(data))
    assert_nothing_accepted(trust, None)


def test_m3_a_manifest_signed_by_another_publisher_is_refused_and_may_ask_for_a_rotation() -> None:
    """Wrong root: signed by a key this root does not hold.  Refused; the only
    way forward is a rotation signed by the pinned keys."""
    trust = state()
    with pytest.raises(ThresholdError) as caught:
        trust.verify(manifest_envelope(2, keys=(STRANGER,)))
    assert caught.value.code == "threshold-not-met"
    assert trust.rotation_for(caught.value) == Rotation(None)
    assert_nothing_accepted(trust, None)


def test_m4_fewer_signatures_than_the_threshold_are_refused() -> None:
    two_of_two = Root.from_keys([public_key_of(KEY_A), public_key_of(KEY_B)], threshold=2)
    trust = state(pinned=two_of_two)
    with pytest.raises(ThresholdError):
        trust.verify(manifest_envelope(1, keys=(KEY_A,)))
    assert trust.accept(trust.verify(manifest_envelope(1, keys=(KEY_A, KEY_B)))).trusted


# -- rollback, equivocation, fast-forward, freeze ------------------------------


def test_m8_rollback_to_an_older_manifest_is_refused_and_the_mark_holds() -> None:
    mark = HighWater(5, "1" * 64)
    trust = state(high_water=mark)
    with pytest.raises(RollbackError) as caught:
        trust.verify(manifest_envelope(4))
    assert caught.value.code == "rollback"
    assert trust.rotation_for(caught.value) is None
    assert_nothing_accepted(trust, mark)


def test_m9_equivocation_same_version_other_bytes_is_refused() -> None:
    original = manifest_envelope(5)
    mark = HighWater(5, digest(original))
    other = manifest_envelope(5, files=(ENTRY, FileEntry("good/evil.py", "2" * 64, 10)))
    trust = state(high_water=mark)
    with pytest.raises(EquivocationError):
        trust.verify(other)
    assert_nothing_accepted(trust, mark)


def test_m12_fast_forward_beyond_the_sane_bound_is_refused() -> None:
    mark = HighWater(5, "1" * 64)
    trust = state(high_water=mark)
    with pytest.raises(FastForwardError):
        trust.verify(manifest_envelope(5 + JUMP + 1))
    assert_nothing_accepted(trust, mark)
    assert trust.verify(manifest_envelope(5 + JUMP)).trusted.manifest.version == 5 + JUMP


def test_m10_freeze_an_expired_manifest_is_refused() -> None:
    trust = state()
    with pytest.raises(ExpiredError) as caught:
        trust.verify(manifest_envelope(2, expires=NOW - SLACK - timedelta(seconds=1)))
    assert caught.value.check == "expiry"
    assert_nothing_accepted(trust, None)


def test_m10_expiry_within_the_clock_slack_is_tolerated() -> None:
    trust = state()
    assert trust.verify(manifest_envelope(2, expires=NOW - SLACK + timedelta(seconds=1)))


def test_m11_clock_set_back_does_not_reopen_rollback() -> None:
    """A clock set back before the old manifest's expiry makes it "fresh"
    again; the high-water mark refuses it all the same."""
    old = manifest_envelope(4, expires=NOW - timedelta(days=10))
    trust = state(high_water=HighWater(5, "1" * 64), now=NOW - timedelta(days=20))
    with pytest.raises(RollbackError):
        trust.verify(old)


# -- frozen mode ----------------------------------------------------------------


def test_lock_mismatch_a_validly_signed_newer_manifest_is_refused() -> None:
    locked = manifest_envelope(3)
    trust = state(locked_digest=digest(locked))
    newer = manifest_envelope(4)
    assert trust.matches_lock(locked) and not trust.matches_lock(newer)
    with pytest.raises(LockMismatchError):
        trust.verify(newer)
    assert_nothing_accepted(trust, None)


def test_lock_the_locked_manifest_is_accepted_after_its_expiry() -> None:
    """Frozen: the lock, not the publisher's clock, decides what is current."""
    locked = manifest_envelope(3, expires=NOW - timedelta(days=1))
    trust = state(locked_digest=digest(locked))
    assert trust.accept(trust.verify(locked)).trusted.manifest.version == 3


def test_lock_the_locked_manifest_still_obeys_the_high_water_mark() -> None:
    locked = manifest_envelope(3)
    trust = state(locked_digest=digest(locked), high_water=HighWater(4, "1" * 64))
    with pytest.raises(RollbackError):
        trust.verify(locked)


# -- roots and rotation ----------------------------------------------------------


def rotated_to_b() -> TrustState:
    trust = state()
    assert trust.update_root(root_envelope(2, (KEY_B,), (KEY_A, KEY_B))).version == 2
    return trust


def test_m14_a_proper_rotation_moves_trust_to_the_new_keys() -> None:
    trust = rotated_to_b()
    assert trust.root.key_ids == {public_key_of(KEY_B).key_id}
    verdict = trust.accept(trust.verify(manifest_envelope(2, keys=(KEY_B,), root_version=2)))
    assert verdict.root.version == 2


@pytest.mark.parametrize(
    ("version", "signers", "check"),
    [
        (2, (KEY_B,), "root-signed-by-old"),  # self-appointed new keys
        (2, (KEY_A,), "root-signed-by-new"),  # old keys alone (a thief of old keys)
        (3, (KEY_A, KEY_B), "root-version"),  # skips version 2
    ],
    ids=["only-new-keys", "only-old-keys", "skips-a-version"],
)
def test_m14_a_bad_rotation_is_refused_and_the_old_root_kept(
    version: int, signers: tuple[Ed25519PrivateKey, ...], check: str
) -> None:
    trust = state()
    with pytest.raises(RootRotationError) as caught:
        trust.update_root(root_envelope(version, (KEY_B,), signers))
    assert caught.value.check == check
    assert trust.root == ROOT_1


def test_m15_a_revoked_key_cannot_sign_after_the_rotation() -> None:
    trust = rotated_to_b()
    with pytest.raises(ThresholdError):
        trust.verify(manifest_envelope(2, keys=(KEY_A,), root_version=2))
    assert trust.accepted is None


def test_a_manifest_naming_a_later_root_asks_for_a_rotation_up_to_it() -> None:
    trust = state()
    with pytest.raises(RootRotationError) as caught:
        trust.verify(manifest_envelope(2, keys=(KEY_A,), root_version=3))
    assert trust.rotation_for(caught.value) == Rotation(3)


def test_a_manifest_naming_an_older_root_is_final() -> None:
    """Signed by a key both roots hold, but claiming root 1 after rotation to 2:
    no rotation can explain it."""
    trust = state()
    trust.update_root(root_envelope(2, (KEY_A, KEY_C), (KEY_A, KEY_C)))
    with pytest.raises(RootRotationError) as caught:
        trust.verify(manifest_envelope(2, keys=(KEY_A,), root_version=1))
    assert caught.value.check == "root-version"
    assert trust.rotation_for(caught.value) is None


def test_an_expired_newest_root_refuses_acceptance() -> None:
    trust = state()
    trust.update_root(
        root_envelope(2, (KEY_B,), (KEY_A, KEY_B), expires=NOW - timedelta(seconds=1))
    )
    candidate = trust.verify(manifest_envelope(2, keys=(KEY_B,), root_version=2))
    with pytest.raises(ExpiredError) as caught:
        trust.accept(candidate)
    assert caught.value.check == "root-expiry"
    assert trust.accepted is None


def test_an_expired_intermediate_root_does_not_matter() -> None:
    trust = state()
    trust.update_root(root_envelope(2, (KEY_B,), (KEY_A, KEY_B), expires=NOW - timedelta(days=1)))
    trust.update_root(root_envelope(3, (KEY_C,), (KEY_B, KEY_C)))
    verdict = trust.accept(trust.verify(manifest_envelope(2, keys=(KEY_C,), root_version=3)))
    assert verdict.root.version == 3


# -- the order of steps ----------------------------------------------------------


def test_order_a_rotation_after_verification_voids_the_candidate() -> None:
    """Verified under root 1, then root 2 came into force: the candidate must
    be verified again under root 2 before it can be accepted."""
    trust = state()
    candidate = trust.verify(manifest_envelope(2))
    trust.update_root(root_envelope(2, (KEY_B,), (KEY_A, KEY_B)))
    with pytest.raises(TrustOrderError):
        trust.accept(candidate)
    assert trust.accepted is None


def test_order_nothing_changes_after_acceptance() -> None:
    trust = state()
    first = trust.verify(manifest_envelope(2))
    second = trust.verify(manifest_envelope(2))
    trust.accept(first)
    with pytest.raises(TrustOrderError):
        trust.update_root(root_envelope(2, (KEY_B,), (KEY_A, KEY_B)))
    with pytest.raises(TrustOrderError):
        trust.verify(manifest_envelope(3))
    with pytest.raises(TrustOrderError):
        trust.accept(second)
    assert trust.root == ROOT_1
    assert trust.accepted is first.trusted


def test_order_a_candidate_from_elsewhere_cannot_be_accepted() -> None:
    """Only this state's own verification can lead to acceptance: neither a
    hand-made candidate nor one another state verified."""
    other = state()
    foreign = other.verify(manifest_envelope(2))
    trust = state(high_water=HighWater(9, "1" * 64))  # would refuse version 2
    with pytest.raises(TrustOrderError):
        trust.accept(foreign)
    forged = Candidate(foreign.trusted, recalled=False, root_version=1)
    with pytest.raises(TrustOrderError):
        trust.accept(forged)
    assert_nothing_accepted(trust, HighWater(9, "1" * 64))


# -- the memo standing in for the signature check --------------------------------


def test_recall_is_asked_with_the_root_in_force_and_the_envelope_digest() -> None:
    data = manifest_envelope(2)
    asked: list[tuple[Root, str]] = []

    def recall(root: Root, sha256: str) -> tuple[Manifest, frozenset[str]] | None:
        asked.append((root, sha256))
        return None

    trust = rotated_to_b()
    with pytest.raises(ThresholdError):  # signed by the revoked key: checked, refused
        trust.verify(data, recall=recall)
    assert asked == [(trust.root, digest(data))]


def test_recalled_authentication_is_not_remembered_again_and_still_checked() -> None:
    """A memo answer replaces the signature check only: rollback, expiry and
    the rest still run, and the caller is told not to save it again."""
    data = manifest_envelope(4)
    parsed = state().verify(data).trusted.manifest
    key_ids = frozenset({public_key_of(KEY_A).key_id})

    def recall(root: Root, sha256: str) -> tuple[Manifest, frozenset[str]] | None:
        return (parsed, key_ids) if sha256 == digest(data) else None

    trust = state()
    candidate = trust.verify(data, recall=recall)
    assert candidate.recalled
    assert not trust.accept(candidate).remember

    guarded = state(high_water=HighWater(5, "1" * 64))
    with pytest.raises(RollbackError):
        guarded.verify(data, recall=recall)
