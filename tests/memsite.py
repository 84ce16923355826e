"""An in-memory signed site and a transport double serving it (no network).

:class:`DictTransport` keeps the :class:`~secure_import.transport.base.Transport`
contract over a dict of files; :class:`Site` signs a small tree with the real
publisher code, reads it into such a dict, and builds consumer processes
(``Repository(connect=...)``) over fresh doubles with private stores.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from secure_import.errors import DeadlineError, HTTPStatusError, TooLargeError, TransportError
from secure_import.hook.finder import get_finder
from secure_import.publish.sign import publish
from secure_import.repository import Repository
from secure_import.store.audit import AuditLog
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.store.paths import Paths
from secure_import.transport.base import FetchStats, Response, Transport

from .conftest import canary_code, forget_remote_modules

BASE = "https://seam.test/repo/"


class DictTransport:
    """A site held in a dict, served under the :class:`Transport` contract.

    ``failures`` maps a relative path to an exception raised instead of an
    answer (an unreachable server, a 503); ``served`` records each request.
    """

    def __init__(self, site: dict[str, bytes]) -> None:
        self.site = site
        self.failures: dict[str, TransportError] = {}
        self.served: list[tuple[str, str | None]] = []
        self.closed = False
        self._stats = FetchStats()

    @property
    def stats(self) -> FetchStats:
        return self._stats

    def get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None = None,
        what: str = "file",
        waiting: Callable[[], None] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Response:
        assert url.startswith(BASE), url
        assert not self.closed
        rel = url[len(BASE) :]
        if cancel is not None and cancel.is_set():
            raise DeadlineError(f"the {what} was cancelled", check="cancelled", url=url)
        self.served.append((rel, etag))
        self._stats.requests += 1
        if waiting is not None:
            waiting()
        if rel in self.failures:
            raise self.failures[rel]
        body = self.site.get(rel)
        if body is None:
            raise HTTPStatusError(
                f"the server refused the {what}", check="http-status", url=url, got=404
            )
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if etag is not None and etag == tag:
            return Response(url, 304, None, etag)
        if len(body) > cap:
            raise TooLargeError(
                f"the {what} is larger than allowed", check="size", url=url, expected=cap
            )
        self._stats.bytes += len(body)
        return Response(url, 200, body, tag)

    def close(self) -> None:
        self.closed = True


class Site:
    """A publisher's signed tree, read into a dict, and the consumer's stores."""

    def __init__(self, tmp: Path, canary: Path) -> None:
        src, out = tmp / "src", tmp / "out"
        (src / "pkg").mkdir(parents=True)
        (src / "pkg" / "__init__.py").write_text("from . import a, b, c\n")
        for name in "abc":
            (src / "pkg" / f"{name}.py").write_text(f"NAME = {name!r}\n")
        (src / "armed.py").write_text(canary_code(canary) + "VALUE = 42\n")
        (src / "pkg" / "data").mkdir()
        (src / "pkg" / "data" / "table.txt").write_text("a,b\n")
        key_path, self.pub_path = generate_keypair("seam", tmp / "keys")
        publish(src, out, private_keys=[load_private_key_file(key_path)])
        self.files = {
            str(p.relative_to(out)).replace("\\", "/"): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
        self.paths = Paths(cache_dir=tmp / "cache", state_dir=tmp / "state", log_dir=tmp / "log")
        self.transports: list[DictTransport] = []
        #: Failures every new double raises (see DictTransport.failures).
        self.failures: dict[str, TransportError] = {}

    def repository(self, **kwargs: Any) -> Repository:
        """A new consumer process over a fresh double serving the site."""

        def connect() -> Transport:
            double = DictTransport(dict(self.files))
            double.failures.update(self.failures)
            self.transports.append(double)
            return double

        forget_remote_modules()
        for old in list(get_finder().repositories):
            get_finder().remove(old)
        repo = Repository(BASE, keys=[self.pub_path], paths=self.paths, connect=connect, **kwargs)
        get_finder().add(repo)
        return repo

    def audit(self) -> list[dict[str, object]]:
        return list(AuditLog(self.paths.audit_log).records())

    def cached_objects(self) -> dict[str, bytes]:
        base = self.paths.cache_dir / "objects"
        return {p.name: p.read_bytes() for p in base.rglob("*") if p.is_file()}

    def assert_cache_verified(self) -> None:
        for name, data in self.cached_objects().items():
            assert hashlib.sha256(data).hexdigest() == name, f"unverified bytes cached: {name}"
