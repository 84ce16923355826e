"""Unit tests for secure_import.verify.keys: key ids, formats, key files and keygen."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.errors import ConfigError, FormatError, KeyFileError
from secure_import.store import keyfiles
from secure_import.verify import keys
from secure_import.verify.keys import PublicKey

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- PublicKey -------------------------------------------------------------------


def test_key_id_is_sha256_of_raw_public_key() -> None:
    key = keys.public_key_of(Ed25519PrivateKey.generate())
    assert key.key_id == hashlib.sha256(key.raw).hexdigest()
    assert len(key.key_id) == 64 and key.key_id == key.key_id.lower()


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_public_key_of_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(FormatError):
        PublicKey.from_raw(b"\x01" * size)
    with pytest.raises(FormatError):
        PublicKey(b"\x01" * size)


def test_public_key_from_non_bytes_is_refused() -> None:
    with pytest.raises(FormatError):
        PublicKey("a" * 32)  # type: ignore[arg-type]


def test_verify_accepts_a_good_signature() -> None:
    private = Ed25519PrivateKey.generate()
    assert keys.public_key_of(private).verify(private.sign(b"data"), b"data")


def test_verify_rejects_signature_over_other_data() -> None:
    private = Ed25519PrivateKey.generate()
    assert not keys.public_key_of(private).verify(private.sign(b"data"), b"date")


def test_verify_rejects_signature_by_another_key() -> None:
    other = Ed25519PrivateKey.generate()
    key = keys.public_key_of(Ed25519PrivateKey.generate())
    assert not key.verify(other.sign(b"data"), b"data")


@pytest.mark.parametrize("signature", [b"", b"\x00" * 63, b"\x00" * 65, b"\x00" * 64])
def test_verify_never_raises_on_malformed_signatures(signature: bytes) -> None:
    key = keys.public_key_of(Ed25519PrivateKey.generate())
    assert key.verify(signature, b"data") is False


def test_verify_with_invalid_curve_point_returns_false() -> None:
    assert PublicKey(b"\xff" * 32).verify(b"\x00" * 64, b"data") is False


def test_pem_round_trip() -> None:
    key = keys.public_key_of(Ed25519PrivateKey.generate())
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert keys.load_public_key(pem, source="test") == key


def test_keys_compare_by_raw_bytes() -> None:
    raw = keys.public_key_of(Ed25519PrivateKey.generate()).raw
    assert PublicKey(raw) == PublicKey(bytes(raw))
    assert len({PublicKey(raw), PublicKey(bytes(raw))}) == 1


# --- loading public keys -------------------------------------------------------


def test_load_public_key_refuses_garbage_and_names_source() -> None:
    with pytest.raises(KeyFileError) as info:
        keys.load_public_key(b"not a key", source="publisher.pub")
    assert "publisher.pub" in str(info.value)


def test_load_public_key_refuses_ecdsa_key() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError) as info:
        keys.load_public_key(pem, source="ec.pub")
    assert "Ed25519" in str(info.value)


def test_load_public_key_refuses_ed448_key() -> None:
    pem = (
        Ed448PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError):
        keys.load_public_key(pem, source="ed448.pub")


def test_load_public_key_refuses_a_private_key_pem() -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFileError):
        keys.load_public_key(pem, source="oops.key")


def test_load_public_key_file_missing_is_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        keyfiles.load_public_key_file(tmp_path / "absent.pub")
    assert "absent.pub" in str(info.value)


def test_load_public_key_file_directory_is_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        keyfiles.load_public_key_file(tmp_path)


def test_load_public_key_file_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.pub"
    path.write_bytes(b"A" * (1024 * 1024))
    with pytest.raises(KeyFileError):
        keyfiles.load_public_key_file(path)


# --- keygen and private keys ------------------------------------------------------


@posix_only
def test_generate_keypair_writes_private_key_0600_and_public_0644(tmp_path: Path) -> None:
    key_path, pub_path = keyfiles.generate_keypair("publisher", tmp_path / "k")
    assert key_path == tmp_path / "k" / "publisher.key"
    assert pub_path == tmp_path / "k" / "publisher.pub"
    assert _mode(key_path) == 0o600
    assert _mode(pub_path) == 0o644
    assert _mode(tmp_path / "k") == 0o700


@posix_only
def test_private_key_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key_path, _ = keyfiles.generate_keypair("publisher", tmp_path)
    finally:
        os.umask(old)
    assert _mode(key_path) == 0o600


def test_generated_keys_match_and_load_back(tmp_path: Path) -> None:
    key_path, pub_path = keyfiles.generate_keypair("publisher", tmp_path)
    private = keyfiles.load_private_key_file(key_path)
    public = keyfiles.load_public_key_file(pub_path)
    assert keys.public_key_of(private) == public
    assert public.verify(private.sign(b"x"), b"x")
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_encrypted_key_round_trip(tmp_path: Path) -> None:
    key_path, pub_path = keyfiles.generate_keypair("enc", tmp_path, passphrase=b"correct horse")
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    private = keyfiles.load_private_key_file(key_path, passphrase=b"correct horse")
    assert keys.public_key_of(private) == keyfiles.load_public_key_file(pub_path)


def test_encrypted_key_without_passphrase_is_refused(tmp_path: Path) -> None:
    key_path, _ = keyfiles.generate_keypair("enc", tmp_path, passphrase=b"secret")
    with pytest.raises(KeyFileError) as info:
        keyfiles.load_private_key_file(key_path)
    assert "passphrase" in str(info.value)


def test_encrypted_key_with_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    key_path, _ = keyfiles.generate_keypair("enc", tmp_path, passphrase=b"secret")
    with pytest.raises(KeyFileError):
        keyfiles.load_private_key_file(key_path, passphrase=b"guess")


def test_passphrase_for_unencrypted_key_is_refused(tmp_path: Path) -> None:
    key_path, _ = keyfiles.generate_keypair("plain", tmp_path)
    with pytest.raises(KeyFileError):
        keyfiles.load_private_key_file(key_path, passphrase=b"secret")


def test_missing_private_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        keyfiles.load_private_key_file(tmp_path / "nope.key")


def test_non_ed25519_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.key"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError) as info:
        keyfiles.load_private_key_file(path)
    assert "Ed25519" in str(info.value)


def test_public_key_file_given_as_private_key_is_refused(tmp_path: Path) -> None:
    _, pub_path = keyfiles.generate_keypair("p", tmp_path)
    with pytest.raises(KeyFileError):
        keyfiles.load_private_key_file(pub_path)


def test_existing_key_is_not_overwritten(tmp_path: Path) -> None:
    key_path, pub_path = keyfiles.generate_keypair("publisher", tmp_path)
    before = (key_path.read_bytes(), pub_path.read_bytes())
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair("publisher", tmp_path)
    assert (key_path.read_bytes(), pub_path.read_bytes()) == before


def test_existing_public_key_alone_blocks_generation(tmp_path: Path) -> None:
    (tmp_path / "publisher.pub").write_bytes(b"keep me")
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair("publisher", tmp_path)
    assert (tmp_path / "publisher.pub").read_bytes() == b"keep me"
    assert not (tmp_path / "publisher.key").exists()


@posix_only
def test_dangling_symlink_at_key_path_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "publisher.key").symlink_to(target)
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair("publisher", tmp_path)
    assert not target.exists()


@posix_only
def test_force_replaces_keys_atomically_with_right_modes(tmp_path: Path) -> None:
    key_path, pub_path = keyfiles.generate_keypair("publisher", tmp_path)
    old_pub = keyfiles.load_public_key_file(pub_path)
    keyfiles.generate_keypair("publisher", tmp_path, force=True)
    new_pub = keyfiles.load_public_key_file(pub_path)
    assert new_pub != old_pub
    assert keys.public_key_of(keyfiles.load_private_key_file(key_path)) == new_pub
    assert _mode(key_path) == 0o600
    assert _mode(pub_path) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["publisher.key", "publisher.pub"]


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".hidden", "a/b", "../x", "a b", "x" * 65, "k\n", "caf\u00e9", "a:b"],
)
def test_bad_key_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "A1", "pub.2026-01_x", "x" * 64])
def test_good_key_names_are_accepted(tmp_path: Path, name: str) -> None:
    key_path, _ = keyfiles.generate_keypair(name, tmp_path)
    assert key_path.name == f"{name}.key"


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair("p", tmp_path, passphrase=b"")


def test_key_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_bytes(b"")
    with pytest.raises(ConfigError):
        keyfiles.generate_keypair("p", file)


# --- passphrases -------------------------------------------------------------------


def test_passphrase_from_file_strips_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_bytes(b"secret\n\n")
    assert keyfiles.read_passphrase(file=str(path), env=None) == b"secret\n"
    path.write_bytes(b"secret\r\n")
    assert keyfiles.read_passphrase(file=str(path), env=None) == b"secret"
    path.write_bytes(b"secret")
    assert keyfiles.read_passphrase(file=str(path), env=None) == b"secret"


def test_missing_passphrase_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        keyfiles.read_passphrase(file=str(tmp_path / "nope"), env=None)


def test_empty_passphrase_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_bytes(b"\n")
    with pytest.raises(ConfigError):
        keyfiles.read_passphrase(file=str(path), env=None)


def test_passphrase_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SI_TEST_PASS", "s3cret")
    assert keyfiles.read_passphrase(file=None, env="SI_TEST_PASS") == b"s3cret"


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_passphrase_variable_is_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SI_TEST_PASS", raising=False)
    else:
        monkeypatch.setenv("SI_TEST_PASS", value)
    with pytest.raises(ConfigError):
        keyfiles.read_passphrase(file=None, env="SI_TEST_PASS")


def test_no_passphrase_source_gives_none() -> None:
    assert keyfiles.read_passphrase(file=None, env=None) is None


def test_both_passphrase_sources_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        keyfiles.read_passphrase(file=str(tmp_path / "p"), env="X")
