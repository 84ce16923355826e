"""``secure-import publish SITE --to s3://bucket/prefix``: upload a signed site safely.

The store is untrusted transport (consumers verify every byte), so what this
module protects is *availability* and *order*: a consumer must never be handed
a manifest whose files are not all in the store, and a publisher must never
replace a newer release by an older one or silently undo a concurrent one.

Invariants, in the order the steps run:

- only verified bytes are uploaded: the site's manifest is checked against the
  given public keys (signature, threshold, expiry) and every file against its
  signed sha256 and length, in memory, before anything is sent; the bundles are
  rebuilt from those verified bytes, never read from the site;
- one publisher at a time: a lock object is created with a create-only put
  (``If-None-Match: *``); a second publisher fails at once with
  :class:`~secure_import.errors.PublishConflictError` and writes nothing;
- never backwards: the manifest already in the store is verified with the same
  keys and its signed version must be lower than the site's (an identical
  manifest is "already published": missing or altered content is repaired);
  a manifest that does not verify is not overwritten;
- content first: every object the new manifest names is in place (created
  with create-only puts; a changed file at an existing path is overwritten only
  with ``If-Match`` on the ETag just listed) before the manifest is written;
- manifest last, conditionally: ``If-Match`` on the ETag of the manifest that
  was read and verified (``If-None-Match: *`` when there was none), so if
  anything else replaced it meanwhile the publish fails and the store keeps
  the other release;
- credentials are never printed (messages are scrubbed of them).

What the store must guarantee: read-after-write consistency and atomic
conditional puts on ETags (AWS S3, MinIO, R2, GCS's S3 API and Ceph do).
"""

from __future__ import annotations

import base64
import importlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secure_import.config import (
    MANIFEST_NAME,
    MANIFEST_PAYLOAD_NAME,
    SIGSTORE_BUNDLE_NAME,
    Limits,
)
from secure_import.errors import (
    ConfigError,
    HTTPStatusError,
    PublishConflictError,
    SecureImportError,
    TooLargeError,
)
from secure_import.publish.bundles import site_bundles
from secure_import.store.fsutil import read_file
from secure_import.transport.s3 import (
    S3Location,
    S3Options,
    is_not_found,
    open_store,
    parse_s3_url,
    store_errors,
    translate,
)
from secure_import.verify.hashes import verify_bytes
from secure_import.verify.keys import PublicKey
from secure_import.verify.root import ROOTS_DIR, Root
from secure_import.verify.trust import authenticate_manifest, verify_manifest

__all__ = ["LOCK_NAME", "S3PublishResult", "publish_to_s3"]

#: The lock object, beside the manifest.  No manifest can list it: top-level
#: files of a repository are modules (``*.py``) or ``*.dist-info`` folders.
LOCK_NAME = "secure-import-publish.lock"
#: Objects whose name is derived from their content (bundles) or that are never
#: rewritten (roots): caches may keep them for ever.
_IMMUTABLE = "max-age=31536000, immutable"
#: The manifest and path-named files change between versions: revalidate.
_REVALIDATE = "no-cache"


@dataclass
class S3PublishResult:
    """What a publish did (``uploaded``/``unchanged`` are repository-relative paths)."""

    url: str
    version: int
    previous_version: int | None
    already_published: bool
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Object:
    path: str
    data: bytes
    immutable: bool


def publish_to_s3(
    site: Path,
    target: str | S3Location,
    *,
    keys: Sequence[PublicKey],
    threshold: int = 1,
    options: S3Options | None = None,
    limits: Limits | None = None,
    break_lock: bool = False,
    now: datetime | None = None,
) -> S3PublishResult:
    """Upload the signed site in ``site`` to ``target`` (``s3://bucket/prefix``).

    ``keys``/``threshold`` are the publisher's *public* keys: the site and the
    manifest already in the store must verify with them (give every key that
    may have signed the published manifest across a rotation).  ``break_lock``
    removes a lock left by an interrupted publish (only when no other publish
    is running: the lock is what keeps two publishers apart).

    Raises:
        ConfigError: the site does not verify, or bad arguments.
        PublishConflictError: another publish holds the lock or committed first,
            or the store's manifest is newer or does not verify.
        TransportError: the store could not be reached or refused a request.
    """
    location = target if isinstance(target, S3Location) else parse_s3_url(target)
    limits = limits or Limits()
    if not keys:
        raise ConfigError("publishing needs the publisher's public keys (--key)", check="keys")
    root = Root.from_keys(list(keys), threshold)
    manifest_bytes, version, objects = _load_site(site, root, limits, now)
    store = open_store(location, options or S3Options(), limits)
    obstore = importlib.import_module("obstore")
    token = _acquire_lock(obstore, store, location, break_lock=break_lock)
    result: S3PublishResult | None = None
    try:
        remote, etag = _read_manifest(obstore, store, location, limits)
        previous: int | None = None
        same = remote is not None and remote == manifest_bytes
        if remote is not None:
            previous = _remote_version(remote, root, location)
            if not same and previous >= version:
                raise PublishConflictError(
                    "the store already holds a manifest that is not older than this site's; "
                    "refusing to replace it (sign a higher version, or publish elsewhere)",
                    check="remote-version",
                    url=location.url_for(MANIFEST_NAME),
                    expected=f"< {version}",
                    got=previous,
                )
        result = S3PublishResult(location.url, version, previous, already_published=same)
        _upload_content(obstore, store, location, objects, result)
        if not same:
            _commit_manifest(obstore, store, location, manifest_bytes, etag)
            result.uploaded.append(MANIFEST_NAME)
        else:
            result.unchanged.append(MANIFEST_NAME)
        _remove_stale_sigstore(obstore, store, location, objects, result)
        return result
    finally:
        warning = _release_lock(obstore, store, location, token)
        if warning is not None and result is not None:
            result.warnings.append(warning)


# -- the site ----------------------------------------------------------------


def _load_site(
    site: Path, root: Root, limits: Limits, now: datetime | None
) -> tuple[bytes, int, list[_Object]]:
    """The manifest bytes, its version, and every object to upload, verified."""
    if not site.is_dir():
        raise ConfigError("the site directory does not exist", check="site", got=str(site))
    manifest_path = site / MANIFEST_NAME
    envelope = read_file(manifest_path)
    if envelope is None:
        raise ConfigError(
            "no signed manifest in the site directory (make one with 'secure-import sign')",
            check="site",
            got=str(manifest_path),
        )
    try:
        trusted = verify_manifest(
            envelope,
            root=root,
            now=now or datetime.now(UTC),
            high_water=None,
            clock_slack=limits.clock_slack,
            max_version_jump=2**53,
            url=str(manifest_path),
        )
    except SecureImportError as exc:
        raise ConfigError(
            f"the site's manifest does not verify with the given keys; nothing was uploaded "
            f"({exc})",
            check="site-verify",
            url=str(manifest_path),
        ) from exc
    manifest = trusted.manifest
    objects: list[_Object] = []
    contents: dict[str, bytes] = {}
    for rel, entry in sorted(manifest.files.items()):
        path = site / rel
        data = read_file(path)
        if data is None:
            raise ConfigError(
                "a file the manifest lists is missing from the site; nothing was uploaded",
                check="site-verify",
                url=str(path),
            )
        try:
            verify_bytes(data, entry, url=str(path))
        except SecureImportError as exc:
            raise ConfigError(
                f"the site does not match its manifest; nothing was uploaded ({exc})",
                check="site-verify",
                url=str(path),
            ) from exc
        contents[rel] = data
        objects.append(_Object(rel, data, immutable=False))
    for rel, data in site_bundles(site, manifest, contents):
        objects.append(_Object(rel, data, immutable=True))
    roots = site / ROOTS_DIR
    if roots.is_dir():
        for path in sorted(roots.glob("*.json")):
            data = read_file(path)
            if path.stem.isdigit() and data is not None:
                objects.append(_Object(f"{ROOTS_DIR}/{path.name}", data, immutable=True))
    objects.extend(_sigstore_objects(site, envelope))
    return envelope, manifest.version, objects


#: Files that ride along with the manifest when it is signed keylessly: the
#: Sigstore bundle over the payload, and the payload itself (for ``sigstore
#: verify``).  Consumers verify the bundle; they are uploaded before the
#: manifest and, when the site has none, a stale copy is removed after it.
_SIGSTORE_FILES = (SIGSTORE_BUNDLE_NAME, MANIFEST_PAYLOAD_NAME)


def _sigstore_objects(site: Path, envelope: bytes) -> list[_Object]:
    found = []
    for name in _SIGSTORE_FILES:
        data = read_file(site / name)
        if data is None:
            continue
        if name == MANIFEST_PAYLOAD_NAME and data != _payload_of(envelope):
            raise ConfigError(
                "the site's payload file is not the payload of its manifest; nothing was "
                "uploaded (sign again)",
                check="site-verify",
                url=str(site / name),
            )
        found.append(_Object(name, data, immutable=False))
    return found


def _payload_of(envelope: bytes) -> bytes:
    try:
        return base64.b64decode(json.loads(envelope)["payload"], validate=True)
    except (ValueError, KeyError, TypeError):
        return b""


def _remote_version(remote: bytes, root: Root, location: S3Location) -> int:
    url = location.url_for(MANIFEST_NAME)
    try:
        parsed, _ = authenticate_manifest(remote, root=root, url=url)
    except SecureImportError as exc:
        raise PublishConflictError(
            "the manifest in the store does not verify with the given keys, so its version "
            f"cannot be trusted; refusing to replace it ({exc.detail}). Investigate, then "
            "remove it by hand if it is not a release of yours",
            check="remote-manifest",
            url=url,
        ) from exc
    return parsed.version


# -- the store ---------------------------------------------------------------


def _get(
    obstore: Any, store: Any, location: S3Location, rel: str, cap: int
) -> tuple[bytes, str | None] | None:
    """An object's bytes and ETag, ``None`` if absent; at most ``cap`` bytes."""
    url = location.url_for(rel)
    try:
        result = obstore.get(store, location.key(rel))
        size = int(result.meta["size"])
        if size > cap:
            raise TooLargeError(
                "the object is larger than allowed",
                check="size",
                url=url,
                expected=f"<= {cap} bytes",
                got=f"{size} bytes",
            )
        data = bytes(result.bytes())
    except store_errors() as exc:
        if is_not_found(exc):
            return None
        raise translate(exc, url=url, what=rel) from None
    if len(data) > cap:
        raise TooLargeError(
            "the object is larger than allowed",
            check="size",
            url=url,
            expected=f"<= {cap} bytes",
            got=f"{len(data)} bytes",
        )
    etag = result.meta.get("e_tag")
    return data, etag


def _read_manifest(
    obstore: Any, store: Any, location: S3Location, limits: Limits
) -> tuple[bytes | None, str | None]:
    found = _get(obstore, store, location, MANIFEST_NAME, limits.manifest_max_bytes)
    if found is None:
        return None, None
    data, etag = found
    if etag is None:
        raise HTTPStatusError(
            "the store returned the manifest without an ETag; conditional writes need one",
            check="etag",
            url=location.url_for(MANIFEST_NAME),
        )
    return data, etag


def _put(obstore: Any, store: Any, location: S3Location, obj: _Object, mode: Any) -> None:
    obstore.put(
        store,
        location.key(obj.path),
        obj.data,
        mode=mode,
        use_multipart=False,
        attributes={"Cache-Control": _IMMUTABLE if obj.immutable else _REVALIDATE},
    )


def _upload_content(
    obstore: Any,
    store: Any,
    location: S3Location,
    objects: list[_Object],
    result: S3PublishResult,
) -> None:
    """Put every object the manifest needs; skip those already there byte for byte."""
    listed: dict[str, tuple[int, str | None]] = {}
    exceptions = obstore.exceptions
    try:
        for batch in obstore.list(store, prefix=location.prefix or None):
            for meta in batch:
                listed[meta["path"]] = (int(meta["size"]), meta.get("e_tag"))
    except store_errors() as exc:
        raise translate(exc, url=location.url, what="listing") from None
    for obj in objects:
        url = location.url_for(obj.path)
        seen = listed.get(location.key(obj.path))
        mode: Any = "create"
        if seen is not None:
            size, etag = seen
            if size == len(obj.data):
                found = _get(obstore, store, location, obj.path, len(obj.data))
                if found is not None and found[0] == obj.data:
                    result.unchanged.append(obj.path)
                    continue
                if found is not None:
                    etag = found[1]
            if obj.path.startswith(f"{ROOTS_DIR}/"):
                raise PublishConflictError(
                    "the store holds a different root document under this version; roots "
                    "are never rewritten",
                    check="root-immutable",
                    url=url,
                )
            mode = {"e_tag": etag} if etag else "overwrite"
        try:
            _put(obstore, store, location, obj, mode)
        except (exceptions.AlreadyExistsError, exceptions.PreconditionError) as exc:
            raise PublishConflictError(
                "an object changed in the store while this publish was writing it: another "
                "publisher (one that ignored the lock?) is at work; the manifest was not "
                "changed",
                check="content-write",
                url=url,
            ) from exc
        except store_errors() as exc:
            raise translate(exc, url=url, what=obj.path) from None
        result.uploaded.append(obj.path)


def _remove_stale_sigstore(
    obstore: Any,
    store: Any,
    location: S3Location,
    objects: list[_Object],
    result: S3PublishResult,
) -> None:
    """After the commit: a Sigstore bundle or payload the new site does not have
    belongs to an older manifest; remove it (a warning if that fails)."""
    present = {obj.path for obj in objects}
    for name in _SIGSTORE_FILES:
        if name in present:
            continue
        try:
            obstore.delete(store, location.key(name))
        except store_errors() as exc:
            if not is_not_found(exc):
                result.warnings.append(
                    f"could not remove the stale {location.url_for(name)}: "
                    f"{translate(exc, url=location.url_for(name), what=name).detail}"
                )


def _commit_manifest(
    obstore: Any, store: Any, location: S3Location, data: bytes, etag: str | None
) -> None:
    url = location.url_for(MANIFEST_NAME)
    mode: Any = "create" if etag is None else {"e_tag": etag}
    exceptions = obstore.exceptions
    try:
        _put(obstore, store, location, _Object(MANIFEST_NAME, data, immutable=False), mode)
    except (exceptions.AlreadyExistsError, exceptions.PreconditionError) as exc:
        raise PublishConflictError(
            "the manifest in the store changed after it was read: another publisher committed "
            "first; the store keeps that release and this one was not published (run again "
            "to publish on top of it, with a higher version)",
            check="manifest-commit",
            url=url,
            expected=f"ETag {etag}" if etag else "no manifest yet",
        ) from exc
    except store_errors() as exc:
        raise translate(exc, url=url, what="manifest") from None


def _acquire_lock(obstore: Any, store: Any, location: S3Location, *, break_lock: bool) -> str:
    token = secrets.token_hex(16)
    body = json.dumps(
        {
            "token": token,
            "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "by": "secure-import publish",
        }
    ).encode()
    lock = _Object(LOCK_NAME, body, immutable=False)
    url = location.url_for(LOCK_NAME)
    exceptions = obstore.exceptions
    for attempt in (1, 2):
        try:
            _put(obstore, store, location, lock, "create")
            return token
        except (exceptions.AlreadyExistsError, exceptions.PreconditionError) as exc:
            held = _get(obstore, store, location, LOCK_NAME, 4096)
            if held is None and attempt == 1:
                continue  # released between our put and our read: try once more
            created = _lock_created(held[0]) if held is not None else "unknown"
            if break_lock and attempt == 1:
                try:
                    obstore.delete(store, location.key(LOCK_NAME))
                except store_errors() as err:
                    raise translate(err, url=url, what="publish lock") from None
                continue
            raise PublishConflictError(
                "another publish to this location is in progress, or one was interrupted "
                "(if no publisher is running, run again with --break-lock)",
                check="publish-lock",
                url=url,
                got=f"lock created {created}",
            ) from exc
        except store_errors() as exc:
            raise translate(exc, url=url, what="publish lock") from None
    raise PublishConflictError("the publish lock could not be taken", check="publish-lock", url=url)


def _lock_created(body: bytes) -> str:
    try:
        value = json.loads(body).get("created")
    except (ValueError, AttributeError):
        return "unknown"
    return str(value) if isinstance(value, str) else "unknown"


def _release_lock(obstore: Any, store: Any, location: S3Location, token: str) -> str | None:
    """Delete our lock if it is still ours; a warning (not an error) if that fails."""
    failures: tuple[type[BaseException], ...] = (SecureImportError, *store_errors())
    try:
        held = _get(obstore, store, location, LOCK_NAME, 4096)
        if held is None:
            return "the publish lock was already gone (broken by another publisher?)"
        try:
            ours = json.loads(held[0]).get("token") == token
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            return "the publish lock was taken over by another publisher; left in place"
        obstore.delete(store, location.key(LOCK_NAME))
    except failures as exc:
        return f"could not remove the publish lock {location.url_for(LOCK_NAME)}: {exc}"
    return None
