"""Shared fixtures: a publisher simulator over real HTTPS, and an isolated consumer.

The simulator drives a real :class:`~secure_import.publish.serve.RepoServer` on
127.0.0.1 with a certificate from a throwaway trustme CA.  It can publish,
tamper with a served file or the manifest, roll back to an earlier snapshot,
and script misbehaving answers (redirect, delay, drip, truncate, endless).
Consumers get private cache/state/log directories under ``tmp_path``; the
user's real directories are never touched (the SECURE_IMPORT_*_DIR variables
point into ``tmp_path`` for every test, as a second guard).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.config import BUNDLE_DIR, MANIFEST_NAME
from secure_import.hook.finder import RemoteLoader, get_finder
from secure_import.publish.serve import RepoServer, RequestInfo, Response
from secure_import.publish.sign import PublishResult, publish
from secure_import.store.audit import AuditLog
from secure_import.store.keyfiles import generate_keypair, load_private_key_file
from secure_import.store.paths import Paths
from secure_import.verify import manifest as manifest_mod
from secure_import.verify.bundle import bundle_entries
from secure_import.verify.manifest import FileEntry

from .httpsrig import TLSServerFactory, make_rig
from .nginxrig import NginxServer, nginx_available

HERE = Path(__file__).parent

#: The S3-compatible emulator and bucket fixtures (tests/s3rig.py).
pytest_plugins = ["tests.s3rig"]


def canary_code(canary: Path) -> str:
    """A line of module code that proves, by leaving a file, that it ran."""
    return f"import pathlib as _p; _p.Path({str(canary)!r}).write_text('ran')\n"


class Publisher:
    """A publisher and its HTTPS server, with attacker powers for tests."""

    def __init__(self, tmp: Path, rig: TLSServerFactory, name: str = "publisher") -> None:
        self.tmp = tmp
        self.rig = rig
        self.src = tmp / f"{name}-src"
        self.out = tmp / f"{name}-repo"
        self.src.mkdir()
        self.out.mkdir()
        self.key_path, self.pub_path = generate_keypair(name, tmp / f"{name}-keys")
        self.private_key = load_private_key_file(self.key_path)
        self.snapshots: dict[int, Path] = {}
        self.scripted: dict[str, Response | Callable[[RequestInfo], Response | None]] = {}
        self.server = RepoServer(
            self.out, ssl_context=rig.server_context(), handler_hook=self._hook
        )
        self.server.start()

    # -- publishing -------------------------------------------------------

    def write(self, rel: str, text: str | bytes) -> None:
        path = self.src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    def publish(self, **kwargs: Any) -> PublishResult:
        kwargs.setdefault("private_keys", [self.private_key])
        result = publish(self.src, self.out, **kwargs)
        snap = self.tmp / f"snapshot-{self.out.name}-{result.manifest.version}"
        if snap.exists():
            shutil.rmtree(snap)
        shutil.copytree(self.out, snap)
        self.snapshots[result.manifest.version] = snap
        return result

    def serve_snapshot(self, version: int) -> None:
        """Serve exactly what was published as ``version`` (a rollback/freeze)."""
        for item in self.out.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
        shutil.copytree(self.snapshots[version], self.out, dirs_exist_ok=True)

    # -- attacks ------------------------------------------------------------

    def tamper(self, rel: str, data: bytes) -> None:
        """Replace the bytes served for ``rel`` (the signed manifest is kept).

        The attacker is thorough: the bundle that carries ``rel`` (the signed,
        compressed one under its signed name, or the unsigned one of a legacy
        site) is rewritten with the same bytes, so every download path sees
        the change.
        """
        (self.out / rel).write_bytes(data)
        top = rel.split("/", 1)[0].removesuffix(".py")
        for bundle in (self.out / BUNDLE_DIR).glob(f"{top}.*.bin"):
            members = bundle_entries(self.signed_files(), top)
            bundle.write_bytes(b"".join((self.out / e.path).read_bytes() for e in members))
        signed = self.signed_manifest()
        carrier = signed.bundle_of(rel)
        if carrier is not None:
            body = b"".join((self.out / m).read_bytes() for m in carrier.members)
            # Cut or padded to the signed length: only the hash can tell.
            forged = zlib.compress(body, 9).ljust(carrier.length, b"\0")[: carrier.length]
            (self.out / carrier.path).write_bytes(forged)

    def signed_manifest(self) -> manifest_mod.Manifest:
        env = json.loads(self.manifest_bytes())
        return manifest_mod.parse(base64.b64decode(env["payload"]))

    def signed_files(self) -> dict[str, FileEntry]:
        return dict(self.signed_manifest().files)

    def manifest_bytes(self) -> bytes:
        return (self.out / MANIFEST_NAME).read_bytes()

    def respond(
        self, path: str, response: Response | Callable[[RequestInfo], Response | None]
    ) -> None:
        """Answer requests for ``/path`` with a scripted response."""
        self.scripted["/" + path.lstrip("/")] = response

    def _hook(self, request: RequestInfo) -> Response | None:
        scripted = self.scripted.get(request.path)
        if scripted is None:
            return None
        if callable(scripted):
            return scripted(request)
        return scripted

    # -- observation --------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    def request_paths(self) -> list[str]:
        return [r.path for r in self.server.requests]

    def close(self) -> None:
        self.server.stop()


@dataclass
class Consumer:
    """What a test needs to check the state after an import."""

    paths: Paths
    publisher: Publisher

    def add(self, **kwargs: Any) -> secure_import.Repository:
        """Add a repository as a consumer process would (``clock=`` fakes the time)."""
        kwargs.setdefault("keys", [self.publisher.pub_path])
        kwargs.setdefault("ca_bundle", self.publisher.rig.ca_pem_path)
        kwargs.setdefault("paths", self.paths)
        url = kwargs.pop("url", self.publisher.url)
        if "clock" in kwargs:
            repo = secure_import.Repository(url, **kwargs)
            get_finder().add(repo)
            return repo
        return secure_import.add_repo(url, **kwargs)

    def new_process(self, **kwargs: Any) -> secure_import.Repository:
        """Forget every repository and remote module, then add one afresh:
        what the next run of the same program sees (same cache/state/log)."""
        for repo in list(get_finder().repositories):
            secure_import.remove_repo(repo)
        forget_remote_modules()
        return self.add(**kwargs)

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the cache and state directories, for before/after checks.

        The audit witness (kept in the cache directory) is audit data: it
        changes with every record, refusals included, so it is left out.
        """
        settle_downloads()
        found: dict[str, bytes] = {}
        witness = self.paths.audit_witness.parent
        for base in (self.paths.cache_dir, self.paths.state_dir):
            if base.exists():
                for p in sorted(base.rglob("*")):
                    if p.is_file() and not p.is_symlink() and witness not in p.parents:
                        found[str(p)] = p.read_bytes()
        return found

    def audit(self) -> list[dict[str, Any]]:
        repo_log = AuditLog(self.paths.audit_log)
        return list(repo_log.records())

    def refusals(self) -> list[dict[str, Any]]:
        return [r for r in self.audit() if r["event"] == "refuse"]

    def cached_objects(self) -> dict[str, bytes]:
        settle_downloads()
        base = self.paths.cache_dir / "objects"
        if not base.exists():
            return {}
        return {p.name: p.read_bytes() for p in base.rglob("*") if p.is_file()}

    def assert_cache_verified(self, *, absent: bytes | None = None) -> None:
        """Every cached object hashes to its name; ``absent`` bytes are nowhere."""
        for name, data in self.cached_objects().items():
            assert hashlib.sha256(data).hexdigest() == name, f"unverified bytes cached: {name}"
            if absent is not None:
                assert data != absent, "tampered bytes reached the cache"


def settle_downloads(timeout: float = 30.0) -> None:
    """Wait for download workers an import left running.

    The first failure of a per-file fallback ends the import at once without
    joining the workers still reading (THREATS T9); one may still be writing
    verified bytes through a temporary file.  State checks look at the cache
    after our threads have finished, so a half-renamed temporary file is never
    mistaken for (or hides) an unverified object.
    """
    for thread in threading.enumerate():
        if thread.name.startswith("secure-import-fetch"):
            thread.join(timeout)
            assert not thread.is_alive(), f"download worker still running: {thread.name}"


def forget_remote_modules() -> None:
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and isinstance(spec.loader, RemoteLoader):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SECURE_IMPORT_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("SECURE_IMPORT_STATE_DIR", str(tmp_path / "env-state"))
    monkeypatch.setenv("SECURE_IMPORT_LOG_DIR", str(tmp_path / "env-log"))
    # secure-import serve's kept CA (default: the user's data directory).
    monkeypatch.setenv("SECURE_IMPORT_SERVE_CA_DIR", str(tmp_path / "env-serve-ca"))
    yield
    finder = get_finder()
    for repo in list(finder.repositories):
        secure_import.remove_repo(repo)
    forget_remote_modules()


@pytest.fixture
def rig(tmp_path: Path) -> TLSServerFactory:
    return make_rig(tmp_path)


@pytest.fixture
def publisher(tmp_path: Path, rig: TLSServerFactory) -> Iterator[Publisher]:
    pub = Publisher(tmp_path, rig)
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(
        cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", log_dir=tmp_path / "log"
    )


@pytest.fixture
def consumer(paths: Paths, publisher: Publisher) -> Consumer:
    return Consumer(paths, publisher)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "canary-ran.txt"


@pytest.fixture
def nginx(tmp_path: Path, rig: TLSServerFactory, publisher: Publisher) -> Iterator[NginxServer]:
    """A real nginx serving the publisher's repository directory over HTTPS
    (HTTP/2 offered), with a certificate from the test CA."""
    if not nginx_available():
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with NginxServer(publisher.out, tmp_path / "nginx", rig) as server:
        yield server
