"""Trust roots: which keys may sign, and how many must (pure: bytes in, objects out).

A root names a publisher's keys and the signature threshold.  It is the unit of
key rotation: a new root (a higher version) is the payload of a DSSE envelope of
type :data:`secure_import.verify.envelope.ROOT_PAYLOAD_TYPE`, which the rotation logic
verifies before calling :func:`parse`.  Schema v1 (canonical JSON)::

    {"_type": "secure-import/root", "spec_version": 1, "version": 1,
     "expires": "2036-01-01T00:00:00Z", "threshold": 1,
     "keys": {"<keyid>": {"keytype": "ed25519", "public": "<base64 of 32 bytes>"}}}

Invariants of :func:`parse` (and of :func:`build_payload`, which re-parses its
output):

- strict JSON only (:mod:`secure_import.verify.strictjson`);
- exactly the schema's fields, at the top level and in every key entry; unknown
  or missing fields are refused;
- ``_type`` and ``spec_version`` are exact; ``version`` is an int (never a bool)
  in 1..2**53; ``expires`` is exactly ``YYYY-MM-DDTHH:MM:SSZ``;
- 1 to :data:`MAX_KEYS` keys, each ``ed25519`` with a public key that is strict
  standard base64 of exactly 32 bytes;
- every key id in the map equals the id derived from the key material, so a
  root cannot list one key under two ids or claim an id it does not hold;
- ``threshold`` is an int in 1..number of keys;
- every defect raises :class:`~secure_import.errors.FormatError`; nothing else
  escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from secure_import._frozen import Frozen
from secure_import.errors import ConfigError, FormatError
from secure_import.verify import strictjson
from secure_import.verify.keys import PublicKey
from secure_import.verify.manifest import MAX_VERSION, format_time, parse_time

# Sigstore pins are imported only by a root that has some.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from secure_import.verify.identity import Identity
    from secure_import.verify.keyless import PinnedTrustedRoot

__all__ = [
    "FAR_FUTURE",
    "KEY_TYPE",
    "MAX_KEYS",
    "ROOTS_DIR",
    "ROOT_TYPE",
    "SPEC_VERSION",
    "Root",
    "build_payload",
    "parse",
]

ROOT_TYPE = "secure-import/root"
SPEC_VERSION = 1
KEY_TYPE = "ed25519"
MAX_KEYS = 256
FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

#: Folder of signed root documents in a repository: ``secure-import-roots/N.json``
#: is root version N, signed by a threshold of root N-1's keys and of its own.
ROOTS_DIR = "secure-import-roots"
"""Expiry of a root built from locally pinned keys: pinned keys do not expire."""

_FIELDS = frozenset({"_type", "spec_version", "version", "expires", "threshold", "keys"})
_KEY_FIELDS = frozenset({"keytype", "public"})


class Root(Frozen):
    """A validated trust root: keys sorted by key id, no key twice.

    A root the user pins locally may also name Sigstore ``identities``
    (:class:`~secure_import.verify.identity.Identity`) and the Sigstore
    trusted root their certificates chain to; the threshold then counts
    distinct keys *and* a matching identity (one Sigstore bundle accompanies a
    manifest, so identities add at most one).  Signed root documents (key
    rotation) carry keys only, and a root with identities follows no rotation.
    """

    _fields = ("version", "expires", "threshold", "keys", "identities", "sigstore_root")
    __slots__ = _fields

    version: int
    expires: datetime
    threshold: int
    keys: tuple[PublicKey, ...]
    identities: tuple[Identity, ...]
    sigstore_root: PinnedTrustedRoot | None

    def __init__(
        self,
        version: int,
        expires: datetime,
        threshold: int,
        keys: tuple[PublicKey, ...],
        identities: tuple[Identity, ...] = (),
        sigstore_root: PinnedTrustedRoot | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "version", version)
        init(self, "expires", expires)
        init(self, "threshold", threshold)
        init(self, "keys", keys)
        init(self, "identities", identities)
        init(self, "sigstore_root", sigstore_root)

    @classmethod
    def from_keys(
        cls,
        keys: Sequence[PublicKey],
        threshold: int = 1,
        *,
        version: int = 1,
        expires: datetime = FAR_FUTURE,
        identities: Sequence[Identity] = (),
        sigstore_root: PinnedTrustedRoot | None = None,
    ) -> Root:
        """A root for locally pinned ``keys`` and ``identities`` (duplicates
        are counted once).

        ``expires`` is normalised to UTC whole seconds, as the wire format has.

        Raises:
            ConfigError: if there are no publishers or more than
                :data:`MAX_KEYS` keys, a key is not a :class:`PublicKey` or an
                identity not an :class:`Identity`, identities come without a
                Sigstore trusted root, ``threshold`` is not in 1..number of
                distinct keys (plus one when identities are pinned),
                ``version`` is not in 1..2**53, or ``expires`` is not
                timezone-aware.
        """
        unique: dict[str, PublicKey] = {}
        for key in keys:
            if not isinstance(key, PublicKey):
                raise ConfigError(
                    "pinned keys must be PublicKey objects", check="root", got=type(key).__name__
                )
            unique.setdefault(key.key_id, key)
        pins: list[Identity] = []
        if identities:
            from secure_import.verify.identity import Identity
        for pin in identities:
            if not isinstance(pin, Identity):
                raise ConfigError(
                    "pinned identities must be Identity objects",
                    check="root",
                    got=type(pin).__name__,
                )
            if pin not in pins:
                pins.append(pin)
        if pins and sigstore_root is None:
            raise ConfigError(
                "pinned Sigstore identities need the Sigstore trusted root to verify them",
                check="trusted-root",
            )
        if not 1 <= len(unique) + len(pins) or len(unique) > MAX_KEYS:
            raise ConfigError(
                f"a root needs at least one publisher (a key or a Sigstore identity) and at "
                f"most {MAX_KEYS} distinct keys",
                check="root",
                got=len(unique),
            )
        most = len(unique) + (1 if pins else 0)
        if type(threshold) is not int or not 1 <= threshold <= most:
            raise ConfigError(
                f"threshold must be an integer between 1 and the number of distinct keys "
                f"({len(unique)})"
                + (
                    " plus one for the pinned Sigstore identities (a manifest carries one "
                    "Sigstore bundle, so identities count at most once)"
                    if pins
                    else ""
                ),
                check="threshold",
                got=repr(threshold),
            )
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            raise ConfigError(
                "root version must be an integer in 1..2**53", check="root", got=repr(version)
            )
        if not isinstance(expires, datetime) or expires.utcoffset() is None:
            raise ConfigError("root expiry must be a timezone-aware datetime", check="root")
        expires = expires.astimezone(UTC).replace(microsecond=0)
        ordered = tuple(unique[key_id] for key_id in sorted(unique))
        return cls(
            version=version,
            expires=expires,
            threshold=threshold,
            keys=ordered,
            identities=tuple(pins),
            sigstore_root=sigstore_root if pins else None,
        )

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of this root's keys."""
        return frozenset(key.key_id for key in self.keys)


def _error(
    message: str, url: str | None, *, expected: object = None, got: object = None
) -> FormatError:
    return FormatError(f"root: {message}", check="root", url=url, expected=expected, got=got)


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_keys(value: object, url: str | None) -> tuple[PublicKey, ...]:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_KEYS:
        raise _error(f"keys must be an object with 1 to {MAX_KEYS} entries", url)
    parsed: list[PublicKey] = []
    for key_id in sorted(value):
        entry = value[key_id]
        if not isinstance(entry, dict) or set(entry) != _KEY_FIELDS:
            raise _error(
                f"key {_show(key_id)} must be an object with exactly keytype and public", url
            )
        if entry["keytype"] != KEY_TYPE:
            raise _error(
                f"key {_show(key_id)} has an unsupported type",
                url,
                expected=KEY_TYPE,
                got=_show(entry["keytype"]),
            )
        raw = strictjson.b64decode_strict(
            entry["public"], what=f"root key {_show(key_id)}", url=url
        )
        if len(raw) != 32:
            raise _error(f"key {_show(key_id)} is not 32 bytes", url, expected=32, got=len(raw))
        key = PublicKey(raw)
        if key.key_id != key_id:
            raise FormatError(
                "root: key id does not match the key material",
                check="key-id",
                url=url,
                expected=key.key_id,
                got=_show(key_id),
            )
        parsed.append(key)
    return tuple(parsed)


def parse(payload: bytes, *, url: str | None = None) -> Root:
    """Parse and validate a verified root payload.

    Raises:
        FormatError: if the payload is not a well-formed v1 root.
    """
    document = strictjson.loads(payload, what="root", url=url)
    if not isinstance(document, dict):
        raise _error("must be a JSON object", url)
    if set(document) != _FIELDS:
        raise _error(
            "wrong set of fields",
            url,
            expected=sorted(_FIELDS),
            got=[_show(name, 40) for name in sorted(document)[:10]],
        )
    if document["_type"] != ROOT_TYPE:
        raise _error("_type is not a root", url, expected=ROOT_TYPE, got=_show(document["_type"]))
    spec_version = document["spec_version"]
    if type(spec_version) is not int or spec_version != SPEC_VERSION:
        raise _error(
            "unsupported spec_version", url, expected=SPEC_VERSION, got=_show(spec_version)
        )
    version = document["version"]
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise _error("version must be an integer in 1..2**53", url, got=_show(version))
    expires_text = document["expires"]
    if not isinstance(expires_text, str):
        raise _error("expires must be a time string", url, got=_show(expires_text))
    try:
        expires = parse_time(expires_text)
    except FormatError as exc:
        raise _error("expires is not YYYY-MM-DDTHH:MM:SSZ", url, got=_show(expires_text)) from exc
    keys = _parse_keys(document["keys"], url)
    threshold = document["threshold"]
    if type(threshold) is not int or not 1 <= threshold <= len(keys):
        raise _error(
            "threshold must be an integer in 1..number of keys",
            url,
            expected=f"1..{len(keys)}",
            got=_show(threshold),
        )
    return Root(version=version, expires=expires, threshold=threshold, keys=keys)


def build_payload(root: Root) -> bytes:
    """The canonical JSON payload of ``root`` (to be signed as a root envelope).

    Raises:
        FormatError: if ``root`` breaks a rule :func:`parse` enforces.
    """
    import base64

    try:
        keys = {
            key.key_id: {"keytype": KEY_TYPE, "public": base64.b64encode(key.raw).decode("ascii")}
            for key in root.keys
        }
        if len(keys) != len(root.keys):
            raise _error("the same key is listed twice", None)
        payload = strictjson.dumps_canonical(
            {
                "_type": ROOT_TYPE,
                "spec_version": SPEC_VERSION,
                "version": root.version,
                "expires": format_time(root.expires),
                "threshold": root.threshold,
                "keys": keys,
            }
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise _error("cannot be represented as JSON", None) from exc
    parse(payload)
    return payload
