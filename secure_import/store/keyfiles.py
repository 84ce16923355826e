"""Key files on disk: reading pinned public keys, private keys (optionally
encrypted) and writing new key pairs with safe modes, never overwriting silently."""

from __future__ import annotations

import contextlib
import os

from secure_import.errors import ConfigError, KeyFileError
from secure_import.verify.keys import KEY_NAME_PATTERN, PublicKey, load_public_key, public_key_of

# cryptography and pathlib are imported by the functions that make or read
# private keys: pinning a public key in canonical form needs neither.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_MAX_KEY_FILE_BYTES = 64 * 1024


_MAX_PASSPHRASE_BYTES = 64 * 1024


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise KeyFileError(f"{os.fspath(path)}: key file not found", check="key-file") from exc
    except OSError as exc:
        raise KeyFileError(
            f"{os.fspath(path)}: key file unreadable ({exc.strerror or exc})", check="key-file"
        ) from exc
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"{os.fspath(path)}: key file larger than {_MAX_KEY_FILE_BYTES} bytes",
            check="key-file",
        )
    return data


def load_public_key_file(path: str | os.PathLike[str]) -> PublicKey:
    """Read and parse a SubjectPublicKeyInfo PEM Ed25519 public key file.

    Raises:
        KeyFileError: if the file is missing, unreadable, too large, or not an
            Ed25519 public key.
    """
    return load_public_key(_read_key_file(path), source=os.fspath(path))


def load_private_key_file(
    path: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key, decrypting it with ``passphrase``.

    A passphrase given for an unencrypted key is refused too: the caller
    believes the key is protected and it is not.

    Raises:
        KeyFileError: if the file is missing or unreadable, encrypted and no
            passphrase was given, the passphrase is wrong, a passphrase was
            given for an unencrypted key, or the key is not Ed25519.
    """
    source = os.fspath(path)
    data = _read_key_file(path)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise KeyFileError(
            f"{source}: private key is encrypted and no passphrase was given",
            check="passphrase",
        )
    if not encrypted and passphrase:
        raise KeyFileError(
            f"{source}: a passphrase was given but the private key is not encrypted",
            check="passphrase",
        )
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:
        # cryptography's signal for a passphrase/encryption mismatch.
        raise KeyFileError(
            f"{source}: passphrase does not match the key's encryption", check="passphrase"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        why = "wrong passphrase or corrupt key" if encrypted else "not a PKCS#8 PEM private key"
        raise KeyFileError(f"{source}: {why}", check="private-key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"{source}: private key is not Ed25519",
            check="key-type",
            expected="ed25519",
            got=type(key).__name__,
        )
    return key


def _fsync_directory(directory: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return  # not supported here (e.g. Windows); the file itself was fsynced
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``mode`` from the first byte and write it.

    Not :func:`secure_import.store.fsutil.atomic_write`: a key must never
    replace an existing file unless asked (``O_EXCL``), and a public key is
    0644, not 0600."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)  # the umask may only have removed bits; make it exact
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path``: temp file in the same directory, fsync, rename."""
    temp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    _write_new(temp, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def generate_keypair(
    name: str,
    directory: Path,
    *,
    passphrase: bytes | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Generate an Ed25519 key pair as ``directory/NAME.key`` and ``directory/NAME.pub``.

    The private key is PKCS#8 PEM, encrypted when ``passphrase`` is given,
    created with mode 0600; the public key is SubjectPublicKeyInfo PEM with
    mode 0644.  ``directory`` is created with mode 0700 if missing.  Existing
    files are only replaced (atomically) when ``force`` is true.

    Returns:
        ``(private_key_path, public_key_path)``.

    Raises:
        ConfigError: if ``name`` is not a valid key name, the passphrase is
            empty, ``directory`` is not a directory, or a key file already
            exists and ``force`` is false.
        KeyFileError: if the files cannot be written.
    """
    if not isinstance(name, str) or KEY_NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(
            f"invalid key name {name!r}: use 1-64 of A-Z a-z 0-9 . _ - starting with a "
            "letter or digit",
            check="key-name",
        )
    if passphrase is not None and len(passphrase) == 0:
        raise ConfigError("an empty passphrase is not allowed", check="passphrase")
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ConfigError(f"{directory}: exists and is not a directory", check="key-dir") from exc
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot create key directory ({exc})") from exc
    if not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory", check="key-dir")
    key_path = directory / f"{name}.key"
    pub_path = directory / f"{name}.pub"
    if not force:
        for existing in (key_path, pub_path):
            if os.path.lexists(existing):
                raise ConfigError(
                    f"{existing}: already exists; refusing to overwrite a key (use force)",
                    check="key-exists",
                )

    private_key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = public_key_of(private_key).to_pem()

    try:
        if force:
            _write_replace(key_path, private_pem, 0o600)
            _write_replace(pub_path, public_pem, 0o644)
        else:
            try:
                _write_new(key_path, private_pem, 0o600)
            except FileExistsError as exc:
                raise ConfigError(
                    f"{key_path}: already exists; refusing to overwrite a key (use force)",
                    check="key-exists",
                ) from exc
            try:
                _write_new(pub_path, public_pem, 0o644)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(key_path)
                raise
    except FileExistsError as exc:
        raise ConfigError(
            f"{pub_path}: already exists; refusing to overwrite a key (use force)",
            check="key-exists",
        ) from exc
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot write key files ({exc})") from exc
    _fsync_directory(directory)
    return key_path, pub_path


def read_passphrase(*, file: str | None, env: str | None) -> bytes | None:
    """Read a key passphrase from a file or from an environment variable.

    From a file, one trailing newline (``\\n`` or ``\\r\\n``) is stripped.
    Returns None when neither source is given.

    Raises:
        ConfigError: if both sources are given, the file is missing or
            unreadable, the environment variable is unset, or the passphrase
            is empty.
    """
    if file is not None and env is not None:
        raise ConfigError("give a passphrase file or an environment variable, not both")
    if file is not None:
        try:
            with open(file, "rb") as handle:
                data = handle.read(_MAX_PASSPHRASE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(
                f"{file}: cannot read passphrase file ({exc.strerror or exc})",
                check="passphrase",
            ) from exc
        if len(data) > _MAX_PASSPHRASE_BYTES:
            raise ConfigError(f"{file}: passphrase file is too large", check="passphrase")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise ConfigError(f"{file}: passphrase file is empty", check="passphrase")
        return data
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"environment variable {env} is unset or empty", check="passphrase")
        return os.fsencode(value)
    return None
