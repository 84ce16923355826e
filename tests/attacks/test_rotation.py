"""THREATS.md M14 (key rotation) and M15 (revocation), plus the happy rotation."""

from __future__ import annotations

from pathlib import Path

from secure_import.errors import RootRotationError, ThresholdError
from secure_import.publish.sign import rotate_root
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.store.state import StateStore
from secure_import.verify import envelope
from secure_import.verify import root as rootmod
from secure_import.verify.keys import public_key_of

from .conftest import Scenario, import_victim


def new_key(tmp: Path, name: str) -> object:
    key, _ = generate_keypair(name, tmp / f"{name}-keys")
    return load_private_key_file(key)


def publish_v2_with(scenario: Scenario, key: object) -> None:
    scenario.publisher.write("victim/part.py", "X = 2\n")
    scenario.publisher.publish(private_keys=[key])


def forge_root(scenario: Scenario, version: int, keys: list[object], signers: list[object]) -> None:
    new = rootmod.Root.from_keys(
        [public_key_of(k) for k in keys],
        1,  # type: ignore[arg-type]
        version=version,
    )
    data = envelope.sign(rootmod.build_payload(new), envelope.ROOT_PAYLOAD_TYPE, signers)  # type: ignore[arg-type]
    directory = scenario.publisher.out / rootmod.ROOTS_DIR
    directory.mkdir(exist_ok=True)
    (directory / f"{version}.json").write_bytes(data)


def stored_roots(scenario: Scenario, repo_id: str) -> list[bytes]:
    return StateStore(scenario.consumer.paths.state_dir).roots(repo_id, after=1)


def test_rotation_signed_by_old_and_new_keys_is_followed_and_audited(scenario: Scenario) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    k2 = new_key(scenario.tmp, "k2")
    rotate_root(scenario.publisher.out, old_keys=[scenario.publisher.private_key], new_keys=[k2])  # type: ignore[list-item]
    publish_v2_with(scenario, k2)  # signed by the new key only, root_version 2
    scenario.consumer.new_process()
    assert import_victim().part.X == 2  # type: ignore[attr-defined]
    rotations = [r for r in scenario.consumer.audit() if r["event"] == "rotate"]
    assert len(rotations) == 1 and rotations[0]["manifest_version"] == 2
    assert len(stored_roots(scenario, repo.id)) == 1
    # The next process starts from the stored root: no rotation request again.
    scenario.consumer.new_process()
    scenario.publisher.server.clear_requests()
    import_victim()
    assert not any("secure-import-roots" in p for p in scenario.publisher.request_paths())


def test_m14_rotation_signed_only_by_the_new_keys_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    k2 = new_key(scenario.tmp, "k2")
    forge_root(scenario, 2, keys=[k2], signers=[k2])  # self-appointed
    publish_v2_with(scenario, k2)
    scenario.consumer.new_process()
    scenario.refused(import_victim, RootRotationError, "root-rotation")
    assert stored_roots(scenario, repo.id) == []  # old root kept


def test_m14_rotation_signed_only_by_the_old_keys_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    k2 = new_key(scenario.tmp, "k2")
    forge_root(scenario, 2, keys=[k2], signers=[scenario.publisher.private_key])
    publish_v2_with(scenario, k2)
    scenario.consumer.new_process()
    scenario.refused(import_victim, RootRotationError, "root-rotation")
    assert stored_roots(scenario, repo.id) == []


def test_m14_rotation_skipping_a_version_is_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    k2 = new_key(scenario.tmp, "k2")
    forge_root(scenario, 3, keys=[k2], signers=[scenario.publisher.private_key, k2])
    # served as the file for version 2
    roots = scenario.publisher.out / rootmod.ROOTS_DIR
    (roots / "3.json").rename(roots / "2.json")
    publish_v2_with(scenario, k2)
    scenario.consumer.new_process()
    exc = scenario.refused(import_victim, RootRotationError, "root-rotation")
    assert exc.expected == 2 and exc.got == 3
    assert stored_roots(scenario, repo.id) == []


def test_m15_revoked_key_cannot_sign_a_new_manifest(scenario: Scenario) -> None:
    k2 = new_key(scenario.tmp, "k2")
    scenario.publish_baseline()
    scenario.warm(keys=[scenario.publisher.pub_path, *_pub_files(scenario, k2)])
    # The publisher revokes its first key: root 2 keeps only k2.
    rotate_root(scenario.publisher.out, old_keys=[scenario.publisher.private_key], new_keys=[k2])  # type: ignore[list-item]
    publish_v2_with(scenario, k2)
    scenario.consumer.new_process(keys=[scenario.publisher.pub_path, *_pub_files(scenario, k2)])
    assert import_victim().part.X == 2  # type: ignore[attr-defined]
    # A thief of the revoked key signs version 3.
    scenario.publisher.write("victim/part.py", "X = 3\n")
    scenario.publisher.publish(private_keys=[scenario.publisher.private_key], root_version=2)
    scenario.consumer.new_process(keys=[scenario.publisher.pub_path, *_pub_files(scenario, k2)])
    scenario.refused(import_victim, ThresholdError, "threshold-not-met")


def _pub_files(scenario: Scenario, key: object) -> list[Path]:
    path = scenario.tmp / f"pub-{id(key)}.pub"
    if not path.exists():
        path.write_bytes(public_key_of(key).to_pem())  # type: ignore[arg-type]
    return [path]
