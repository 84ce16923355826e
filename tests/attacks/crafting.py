"""Helpers to forge what an attacker (or a buggy publisher) would serve."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secure_import.verify import envelope
from secure_import.verify.strictjson import dumps_canonical

from ..conftest import Publisher


def payload_of(publisher: Publisher) -> dict[str, Any]:
    """The signed manifest payload currently served, as a dict."""
    env = json.loads(publisher.manifest_bytes())
    value: dict[str, Any] = json.loads(base64.b64decode(env["payload"]))
    return value


def sign_raw(
    payload: bytes,
    keys: list[Ed25519PrivateKey],
    payload_type: str = envelope.MANIFEST_PAYLOAD_TYPE,
) -> bytes:
    """An envelope over arbitrary payload bytes (no validation of the payload)."""
    return envelope.sign(payload, payload_type, keys)


def serve_manifest(publisher: Publisher, data: bytes) -> None:
    """Serve ``data`` as the manifest, with a pointer naming it: the attacker
    controls the server, so clients holding a cached manifest fetch this one."""
    from secure_import.config import MANIFEST_NAME
    from secure_import.verify.pointer import POINTER_NAME, make_pointer

    (publisher.out / MANIFEST_NAME).write_bytes(data)
    (publisher.out / POINTER_NAME).write_bytes(make_pointer(data, 1))


def resign(publisher: Publisher, payload: dict[str, Any], keys: list[Ed25519PrivateKey]) -> None:
    """Serve ``payload`` (any dict) signed by ``keys``."""
    serve_manifest(publisher, sign_raw(dumps_canonical(payload), keys))
