"""Signing and verifying DSSE envelopes (pure: bytes and keys in, verified bytes out).

A DSSE envelope carries the payload as opaque base64 bytes next to its type and
signatures.  The signature covers the pre-authentication encoding (PAE) of the
type and the exact payload bytes, so nothing is ever re-serialised before
verification and a signature made for one payload type cannot be replayed as
another.

Invariants of :func:`verify`:

- the envelope is parsed with :mod:`secure_import.verify.strictjson` (no duplicate
  keys, no floats, bounded depth) and has exactly the fields ``payloadType``,
  ``payload`` and ``signatures``; unknown fields are refused (P7);
- ``payloadType`` must equal the type the caller expects, else
  :class:`SignatureError` with ``check="payload-type"`` (M7); the type is also
  bound into the signed PAE bytes;
- ``payload`` and every ``sig`` are strict standard base64 with padding: the
  decoded bytes must re-encode to the identical text, which refuses the
  URL-safe alphabet, missing padding, whitespace and non-zero pad bits (P6);
- every ``sig`` is exactly 64 bytes and there are at most
  :data:`MAX_SIGNATURES` signatures, else :class:`FormatError` (P6);
- signature entries have exactly ``keyid`` and ``sig``; ``keyid`` is a string
  of at most 64 characters and only a lookup hint: each signature is tried
  against the pinned key with that id first, then against every other pinned
  key, so a claimed key id grants nothing (M2, M3);
- pinned keys are deduplicated by their raw bytes and a key counts once however
  many signatures it made or under however many key ids (M5);
- well-formed signatures that verify under no pinned key are ignored, as long
  as the threshold is met (M6);
- fewer than ``threshold`` distinct pinned keys verified raises
  :class:`ThresholdError` (M1, M4) that names the key ids that signed, those
  pinned and those verified, with ``check`` telling tampering
  (``signature-invalid``: a signature claiming a pinned key failed) from a
  wrong key or a rotation (``no-pinned-signer``); a threshold below 1 or above the number of
  distinct pinned keys is a :class:`ConfigError`;
- the returned payload is exactly the bytes the signatures covered; callers
  parse it only after :func:`verify` returns.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.errors import ConfigError, FormatError, SignatureError, ThresholdError
from secure_import.verify import strictjson
from secure_import.verify.keys import SIGNATURE_LENGTH, PublicKey, public_key_of

__all__ = [
    "MANIFEST_PAYLOAD_TYPE",
    "MAX_KEY_ID_LENGTH",
    "MAX_SIGNATURES",
    "ROOT_PAYLOAD_TYPE",
    "Verified",
    "authenticate",
    "pae",
    "sign",
    "verify",
    "wrap_unsigned",
]

MANIFEST_PAYLOAD_TYPE = "application/vnd.secure-import.manifest+json"
ROOT_PAYLOAD_TYPE = "application/vnd.secure-import.root+json"
MAX_SIGNATURES = 32
MAX_KEY_ID_LENGTH = 64

_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful :func:`verify`.

    ``key_ids`` are the ids of the distinct pinned keys whose signature
    verified; ``payload`` is exactly the signed bytes.
    """

    payload: bytes
    payload_type: str
    key_ids: frozenset[str]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths being the
    ASCII decimal byte lengths.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sign(payload: bytes, payload_type: str, private_keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """Sign ``payload`` as ``payload_type`` with each key; return the envelope bytes.

    The envelope is canonical JSON.  Each key signs the PAE bytes once (a key
    given twice signs once).

    Raises:
        ConfigError: if no key, or more than :data:`MAX_SIGNATURES` keys, is
            given, or ``payload`` is not bytes.
    """
    if not isinstance(payload, bytes):
        raise ConfigError("the payload to sign must be bytes", check="sign")
    message = pae(payload_type, payload)
    signatures: list[dict[str, str]] = []
    seen: set[str] = set()
    for private_key in private_keys:
        key_id = public_key_of(private_key).key_id
        if key_id in seen:
            continue
        seen.add(key_id)
        signatures.append({"keyid": key_id, "sig": _b64encode(private_key.sign(message))})
    if not signatures:
        raise ConfigError("at least one private key is needed to sign", check="sign")
    if len(signatures) > MAX_SIGNATURES:
        raise ConfigError(
            f"at most {MAX_SIGNATURES} signatures fit in an envelope",
            check="sign",
            expected=MAX_SIGNATURES,
            got=len(signatures),
        )
    return strictjson.dumps_canonical(
        {"payloadType": payload_type, "payload": _b64encode(payload), "signatures": signatures}
    )


def wrap_unsigned(payload: bytes, payload_type: str) -> bytes:
    """An envelope with no key signature (canonical JSON, ``signatures: []``).

    For a publisher that signs only keylessly: the Sigstore bundle published
    beside the envelope signs ``payload``, and consumers that pin only keys
    refuse the envelope (no pinned key signed it).
    """
    if not isinstance(payload, bytes):
        raise ConfigError("the payload to sign must be bytes", check="sign")
    return strictjson.dumps_canonical(
        {"payloadType": payload_type, "payload": _b64encode(payload), "signatures": []}
    )


def _parse_signatures(value: object, *, url: str | None) -> list[tuple[str, bytes]]:
    if not isinstance(value, list):
        raise FormatError("envelope signatures must be a list", check="envelope", url=url)
    if len(value) > MAX_SIGNATURES:
        raise FormatError(
            "too many signatures in envelope",
            check="signature-count",
            url=url,
            expected=f"at most {MAX_SIGNATURES}",
            got=len(value),
        )
    parsed: list[tuple[str, bytes]] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise FormatError(f"signature {index} must be an object", check="envelope", url=url)
        if set(entry) != _SIGNATURE_FIELDS:
            raise FormatError(
                f"signature {index} must have exactly the fields keyid and sig",
                check="envelope",
                url=url,
                expected=sorted(_SIGNATURE_FIELDS),
                got=sorted(entry),
            )
        key_id = entry["keyid"]
        if not isinstance(key_id, str) or len(key_id) > MAX_KEY_ID_LENGTH:
            raise FormatError(
                f"signature {index} keyid must be a string of at most "
                f"{MAX_KEY_ID_LENGTH} characters",
                check="envelope",
                url=url,
            )
        sig = strictjson.b64decode_strict(
            entry["sig"], what=f"envelope signatures[{index}].sig", url=url
        )
        if len(sig) != SIGNATURE_LENGTH:
            raise FormatError(
                f"signature {index} has the wrong length",
                check="signature-length",
                url=url,
                expected=SIGNATURE_LENGTH,
                got=len(sig),
            )
        parsed.append((key_id, sig))
    return parsed


def verify(
    envelope: bytes,
    *,
    payload_type: str,
    keys: Iterable[PublicKey],
    threshold: int,
    url: str | None = None,
) -> Verified:
    """Verify ``envelope`` against the pinned ``keys``; return the signed payload.

    See the module docstring for the invariants enforced.

    Raises:
        ConfigError: if ``threshold`` is not an int between 1 and the number of
            distinct pinned keys.
        FormatError: if the envelope is malformed in any way.
        SignatureError: if ``payloadType`` is not ``payload_type``.
        ThresholdError: if fewer than ``threshold`` distinct pinned keys signed.
    """
    return _verify(envelope, payload_type=payload_type, keys=keys, threshold=threshold, url=url)


def authenticate(
    envelope: bytes,
    *,
    payload_type: str,
    keys: Iterable[PublicKey],
    url: str | None = None,
) -> Verified:
    """Which of the pinned ``keys`` signed ``envelope`` (possibly none): every
    check of :func:`verify` except the threshold, which the caller applies
    (keys may share it with Sigstore identities, and there may be no key).

    Raises:
        ConfigError: a pinned key is not a :class:`PublicKey`.
        FormatError: if the envelope is malformed in any way.
        SignatureError: if ``payloadType`` is not ``payload_type``.
    """
    return _verify(envelope, payload_type=payload_type, keys=keys, threshold=None, url=url)


def _verify(
    envelope: bytes,
    *,
    payload_type: str,
    keys: Iterable[PublicKey],
    threshold: int | None,
    url: str | None,
) -> Verified:
    pinned: dict[str, PublicKey] = {}
    for key in keys:
        if not isinstance(key, PublicKey):
            raise ConfigError("pinned keys must be PublicKey instances", check="pinned-keys")
        pinned.setdefault(key.key_id, key)  # the id is derived from raw bytes: dedup by raw
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int)
        or not 1 <= threshold <= len(pinned)
    ):
        raise ConfigError(
            f"threshold must be between 1 and the number of distinct pinned keys ({len(pinned)})",
            check="threshold",
            url=url,
            got=threshold,
        )

    document = strictjson.loads(envelope, what="envelope", url=url)
    if not isinstance(document, dict):
        raise FormatError("envelope must be a JSON object", check="envelope", url=url)
    if set(document) != _ENVELOPE_FIELDS:
        raise FormatError(
            "envelope must have exactly the fields payloadType, payload and signatures",
            check="envelope",
            url=url,
            expected=sorted(_ENVELOPE_FIELDS),
            got=sorted(document),
        )
    got_type = document["payloadType"]
    if not isinstance(got_type, str):
        raise FormatError("envelope payloadType must be a string", check="envelope", url=url)
    if got_type != payload_type:
        raise SignatureError(
            "envelope carries the wrong payload type",
            check="payload-type",
            url=url,
            expected=payload_type,
            got=_show(got_type),
        )
    payload = strictjson.b64decode_strict(document["payload"], what="envelope payload", url=url)
    signatures = _parse_signatures(document["signatures"], url=url)

    message = pae(payload_type, payload)
    verified: set[str] = set()
    #: Claimed ids of signatures that verified under no pinned key although
    #: they claim a pinned key's id: tampering (or a forged claim).
    failed_pinned: list[str] = []
    for claimed_id, sig in signatures:
        candidates: list[PublicKey] = []
        hinted = pinned.get(claimed_id)
        if hinted is not None:
            candidates.append(hinted)
        candidates.extend(key for key_id, key in pinned.items() if key_id != claimed_id)
        matched = False
        for candidate in candidates:
            if candidate.key_id in verified:
                continue  # this key already counted; one key counts once
            if candidate.verify(sig, message):
                verified.add(candidate.key_id)
                matched = True
                break
        if not matched and hinted is not None and claimed_id not in verified:
            failed_pinned.append(claimed_id)

    if threshold is not None and len(verified) < threshold:
        raise _threshold_error(
            signatures=[claimed for claimed, _ in signatures],
            pinned=sorted(pinned),
            verified=sorted(verified),
            failed_pinned=sorted(set(failed_pinned)),
            threshold=threshold,
            url=url,
        )
    return Verified(payload=payload, payload_type=got_type, key_ids=frozenset(verified))


def _ids(key_ids: list[str]) -> str:
    """Key ids as messages show them: the first 16 characters, like short
    commit hashes (the message stays readable; attributes keep them whole)."""
    return ", ".join(k[:16] for k in key_ids) or "none"


def _threshold_error(
    *,
    signatures: list[str],
    pinned: list[str],
    verified: list[str],
    failed_pinned: list[str],
    threshold: int,
    url: str | None,
) -> ThresholdError:
    """A refusal that says exactly why: which key ids signed (as claimed),
    which are pinned, which verified, and whether a signature claiming a
    pinned key failed (``check="signature-invalid"``: the signed bytes were
    altered, or the claim is forged) or no signature is even claimed by a
    pinned key (``check="no-pinned-signer"``: a wrong key pinned, or the
    publisher rotated its keys).  ``check="threshold"`` when some pinned keys
    signed, but too few."""
    detail = (
        f"signed by key ids [{_ids(signatures)}]; pinned [{_ids(pinned)}]; "
        f"verified [{_ids(verified)}]"
    )
    if failed_pinned:
        check = "signature-invalid"
        text = (
            f"a signature claiming pinned key {_ids(failed_pinned)} does not verify "
            "(tampered bytes or a forged claim)"
        )
    elif not verified:
        check = "no-pinned-signer"
        text = "no signature by a pinned key (wrong key pinned, or keys rotated)"
    else:
        check = "threshold"
        text = f"only {len(verified)} distinct pinned key(s) signed, {threshold} required"
    error = ThresholdError(
        f"{text}; {detail}", check=check, url=url, expected=threshold, got=len(verified)
    )
    error.signer_ids = tuple(signatures)
    error.pinned_ids = tuple(pinned)
    error.verified_ids = tuple(verified)
    error.failed_pinned_ids = tuple(failed_pinned)
    return error
