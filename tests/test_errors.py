"""The one error tree: every class's stable code and place, and the refusals
the tree exists for (an offline miss, a damaged cache offline, a refused
configuration audited wherever it was refused).

The table below is the contract operators match on: a class added to
``errors.py`` without a row here, a code changed, or a class moved in the tree
fails :func:`test_every_error_class_has_a_pinned_code_and_parent`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import secure_import
from secure_import import errors
from secure_import.config import MANIFEST_NAME
from secure_import.errors import (
    CacheCorruptError,
    ConfigError,
    InsecureURLError,
    OfflineError,
    SecureImportError,
    TransportError,
)
from secure_import.hook.extend import extend_package
from secure_import.store.audit import AuditLog

from .attacks.conftest import Scenario, import_victim
from .conftest import Consumer, Publisher


@pytest.fixture
def scenario(publisher: Publisher, consumer: Consumer, canary: Path, tmp_path: Path) -> Scenario:
    return Scenario(publisher, consumer, canary, tmp_path)


#: class name -> (code, direct parents).  The drawing in errors.py's docstring
#: shows the same tree.
PINNED: dict[str, tuple[str, tuple[str, ...]]] = {
    "SecureImportError": ("secure-import-error", ("ImportError",)),
    # trust
    "TrustError": ("trust-error", ("SecureImportError",)),
    "FormatError": ("format-error", ("TrustError",)),
    "SignatureError": ("bad-signature", ("TrustError",)),
    "ThresholdError": ("threshold-not-met", ("SignatureError",)),
    "IdentityMismatchError": ("identity-mismatch", ("SignatureError",)),
    "SigstoreBundleError": ("bad-sigstore-bundle", ("SignatureError",)),
    "HashMismatchError": ("hash-mismatch", ("TrustError",)),
    "LengthMismatchError": ("length-mismatch", ("TrustError",)),
    "ExpiredError": ("expired", ("TrustError",)),
    "RollbackError": ("rollback", ("TrustError",)),
    "EquivocationError": ("equivocation", ("TrustError",)),
    "FastForwardError": ("fast-forward", ("TrustError",)),
    "RootRotationError": ("root-rotation", ("TrustError",)),
    "LockMismatchError": ("lock-mismatch", ("TrustError",)),
    "UnsafePathError": ("unsafe-path", ("TrustError",)),
    "DependencyError": ("dependency-refused", ("TrustError",)),
    "UndeclaredImportError": ("undeclared-import", ("DependencyError",)),
    "DependencyConflictError": ("dependency-conflict", ("DependencyError",)),
    "PublisherMismatchError": ("dependency-publisher", ("DependencyError",)),
    "VersionRangeError": ("dependency-range", ("DependencyError",)),
    # transport
    "TransportError": ("transport-error", ("SecureImportError",)),
    "RedirectRefusedError": ("redirect-refused", ("TransportError",)),
    "TLSError": ("tls-error", ("TransportError",)),
    "DeadlineError": ("deadline-exceeded", ("TransportError",)),
    "HTTPStatusError": ("http-status", ("TransportError",)),
    "TooLargeError": ("too-large", ("TransportError",)),
    "EncodingRefusedError": ("encoding-refused", ("TransportError",)),
    "ConnectionFailedError": ("connection-failed", ("TransportError",)),
    "AllSourcesFailedError": ("all-sources-failed", ("TransportError",)),
    "OfflineError": ("offline", ("TransportError",)),
    # local state
    "LocalStateError": ("local-state", ("SecureImportError",)),
    "UnsafePermissionsError": ("unsafe-permissions", ("LocalStateError",)),
    "CacheCorruptError": ("cache-corrupt", ("LocalStateError",)),
    "AuditWriteError": ("audit-write-failed", ("LocalStateError",)),
    "MaterialiseError": ("materialise-failed", ("LocalStateError",)),
    # configuration
    "ConfigError": ("config-error", ("SecureImportError",)),
    "KeyFileError": ("key-file", ("ConfigError",)),
    "InsecureURLError": ("insecure-url", ("ConfigError",)),
    "ChildConfigError": ("child-config-refused", ("ConfigError",)),
    # the rest
    "PublishConflictError": ("publish-conflict", ("SecureImportError",)),
    "RequestBuildError": ("request-invalid", ("SecureImportError",)),
    "NotListedError": ("not-listed", ("SecureImportError", "ModuleNotFoundError")),
}


def error_classes() -> dict[str, type[SecureImportError]]:
    """Every exception class errors.py defines (walked, not listed by hand)."""
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }


def test_every_error_class_has_a_pinned_code_and_parent() -> None:
    found = error_classes()
    assert set(found) == set(PINNED), (
        f"classes without a pinned row: {sorted(set(found) - set(PINNED))}; "
        f"rows for classes that no longer exist: {sorted(set(PINNED) - set(found))}"
    )
    for name, cls in found.items():
        code, parents = PINNED[name]
        assert cls.code == code, f"{name}: code {cls.code!r}, pinned {code!r}"
        assert tuple(base.__name__ for base in cls.__bases__) == parents, name
        assert issubclass(cls, ImportError), name


def test_codes_are_unique_kebab_case_and_exported() -> None:
    codes = [code for code, _ in PINNED.values()]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", code) for code in codes)
    assert sorted(errors.__all__) == sorted(PINNED)
    assert secure_import.errors is errors  # the public API reaches every class


def test_the_drawn_tree_in_the_docstring_matches_the_classes() -> None:
    """errors.py draws the tree: each class on one line with its code,
    indented one level below its parent."""
    doc = errors.__doc__ or ""
    depth: dict[str, int] = {}
    for line in doc.splitlines():
        match = re.match(r"^\s*([│ ]*)(?:[├└]── )?(\w+Error)\b.*?\s([a-z-]+)\s*$", line)
        if match is None:
            continue
        name, code = match.group(2), match.group(3)
        if code == "code":  # the header line: "SecureImportError (ImportError)  code"
            depth[name] = 0
            continue
        depth[name] = len(match.group(1)) // 4 + 1
        assert PINNED[name][0] == code, f"drawn with code {code}: {name}"
    assert set(depth) == set(PINNED)
    for name, (_, parents) in PINNED.items():
        if parents[0] in depth:
            assert depth[name] == depth[parents[0]] + 1, f"{name} drawn at the wrong level"


def test_an_insecure_url_is_a_configuration_refusal_not_a_transport_failure() -> None:
    """THREATS T1: an http:// URL is the user's configuration, refused before
    any request; catching TransportError (retry later) must not catch it."""
    with pytest.raises(ConfigError) as info:
        secure_import.add_repo("http://repo.example/", keys=[])
    assert isinstance(info.value, InsecureURLError)
    assert not isinstance(info.value, TransportError)
    assert info.value.code == "insecure-url"


# --- offline: a miss is "offline", no connection attempted ------------------------


def test_offline_miss_without_a_cached_manifest_is_an_offline_error_with_no_request(
    scenario: Scenario,
) -> None:
    """Offline and nothing cached: OfflineError (no connection was even
    attempted: not ConnectionFailedError), no request reached the server."""
    scenario.publish_baseline()
    scenario.publisher.server.clear_requests()
    scenario.consumer.add(offline=True)
    exc = scenario.refused(import_victim, OfflineError, "offline")
    assert exc.check == "offline"
    assert exc.url is not None and exc.url.endswith(MANIFEST_NAME)
    assert "no manifest is cached" in str(exc)
    assert scenario.publisher.request_paths() == []


def test_offline_miss_of_a_file_not_cached_is_an_offline_error_with_no_request(
    scenario: Scenario,
) -> None:
    """The manifest is cached (``good`` was imported) but ``victim`` never
    was: offline, its files are a miss, named by URL, with no request."""
    scenario.publish_baseline()
    scenario.warm()
    scenario.publisher.server.clear_requests()
    scenario.consumer.new_process(offline=True)
    exc = scenario.refused(import_victim, OfflineError, "offline")
    assert exc.url is not None and exc.url.startswith(scenario.publisher.url + "victim/")
    assert scenario.publisher.request_paths() == []


# --- offline: a damaged cache cannot be replaced ------------------------------------


def test_l1_offline_cached_file_corrupted_is_cache_corrupt_deleted_and_audited(
    scenario: Scenario,
) -> None:
    """THREATS L1 offline: the edited cached file is detected, deleted and
    audited; nothing can replace it, so the import fails with CacheCorruptError
    (the cache's fault, not the network's), and the edited bytes never ran."""
    scenario.publish_baseline()
    scenario.warm()
    import_victim()
    for code_file in (scenario.consumer.paths.cache_dir / "bytecode").rglob("*"):
        if code_file.is_file():
            code_file.unlink()  # so the import has to read the cached source
    sha = scenario.publisher.signed_files()["victim/part.py"].sha256
    cached = scenario.consumer.paths.cache_dir / "objects" / sha[:2] / sha
    cached.write_bytes(scenario.evil())
    scenario.publisher.server.clear_requests()
    scenario.consumer.new_process(offline=True)
    before = {p: d for p, d in scenario.consumer.snapshot().items() if p != str(cached)}
    exc = scenario.refused(import_victim, CacheCorruptError, "cache-corrupt", before=before)
    assert exc.url == scenario.publisher.url + "victim/part.py"
    assert exc.expected == sha
    assert not cached.exists()  # discarded
    corrupt = [r for r in scenario.consumer.audit() if r["event"] == "cache-corrupt"]
    assert [(r["outcome"], r["sha256"]) for r in corrupt] == [("discarded", sha)]
    assert scenario.publisher.request_paths() == []


def test_l1_offline_damaged_cached_manifest_is_cache_corrupt_deleted_and_audited(
    scenario: Scenario,
) -> None:
    scenario.publish_baseline()
    repo = scenario.warm()
    envelope = scenario.consumer.paths.cache_dir / "metadata" / repo.id / MANIFEST_NAME
    envelope.write_bytes(envelope.read_bytes()[:-40])  # truncated
    scenario.publisher.server.clear_requests()
    scenario.consumer.new_process(offline=True)
    before = {p: d for p, d in scenario.consumer.snapshot().items() if p != str(envelope)}
    exc = scenario.refused(import_victim, CacheCorruptError, "cache-corrupt", before=before)
    assert exc.check == "cached-manifest"
    assert not envelope.exists()
    assert [r["outcome"] for r in scenario.consumer.audit() if r["event"] == "cache-corrupt"] == [
        "discarded"
    ]
    assert scenario.publisher.request_paths() == []


# --- a refused configuration is audited wherever it was refused ---------------------


def refusals(log_dir: Path) -> list[dict[str, object]]:
    log = log_dir / "audit.jsonl"
    if not log.exists():
        return []
    return [r for r in AuditLog(log).records() if r["event"] == "refuse"]


def test_refused_add_repo_is_audited(consumer: Consumer) -> None:
    with pytest.raises(InsecureURLError):
        secure_import.add_repo("http://repo.example/", keys=[], paths=consumer.paths)
    assert [r["code"] for r in refusals(consumer.paths.log_dir)] == ["insecure-url"]


def test_refused_extend_package_is_audited(
    consumer: Consumer, publisher: Publisher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first two refusals of ``extend_package`` (an http:// URL; a name
    that is not an imported package) land in the audit log like add_repo's."""
    root = tmp_path / "site"
    (root / "extpkg").mkdir(parents=True)
    (root / "extpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    importlib.import_module("extpkg")
    try:
        with pytest.raises(InsecureURLError):
            extend_package(
                "extpkg", "http://plugins.example/", keys=[publisher.pub_path], paths=consumer.paths
            )
        with pytest.raises(ConfigError):
            extend_package(
                "not_imported_pkg", publisher.url, keys=[publisher.pub_path], paths=consumer.paths
            )
    finally:
        import sys

        sys.modules.pop("extpkg", None)
    records = refusals(consumer.paths.log_dir)
    assert [r["code"] for r in records] == ["insecure-url", "config-error"]
    assert records[0]["url"] == "http://plugins.example/"


def test_refused_configure_is_audited_in_the_default_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit configuration file naming an http:// repository: refused
    while the settings are read (before any directory is known), so the
    record goes to the default log (here SECURE_IMPORT_LOG_DIR)."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "explicit.toml"
    config.write_text(
        '[repositories.a]\nurl = "http://a.example/"\nkeys = ["k.pub"]\nmodules = ["acme"]\n'
    )
    config.chmod(0o600)
    with pytest.raises(ConfigError, match="only https"):
        secure_import.configure(config)
    records = refusals(tmp_path / "env-log")
    assert len(records) == 1
    assert records[0]["code"] == "config-error"
    assert "only https" in str(records[0]["message"])


def test_refused_configure_install_is_audited_in_the_configured_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings that read fine but name a key file that does not exist: the
    repository cannot be built, nothing is installed, and the refusal is
    recorded in the log directory the configuration itself names."""
    monkeypatch.chdir(tmp_path)
    for name in ("CACHE", "STATE", "LOG"):
        monkeypatch.delenv(f"SECURE_IMPORT_{name}_DIR")  # the environment would win
    log_dir = tmp_path / "configured-log"
    config = tmp_path / "explicit.toml"
    config.write_text(
        f'cache_dir = "{tmp_path / "configured-cache"}"\n'
        f'state_dir = "{tmp_path / "configured-state"}"\n'
        f'log_dir = "{log_dir}"\n'
        '[repositories.a]\nurl = "https://a.example/"\n'
        f'keys = ["{tmp_path / "missing.pub"}"]\nmodules = ["acme"]\n'
    )
    config.chmod(0o600)
    with pytest.raises(SecureImportError) as info:
        secure_import.configure(config)
    assert info.value.code == "key-file"
    assert [r["code"] for r in refusals(log_dir)] == ["key-file"]
    assert refusals(tmp_path / "env-log") == []
    assert list(secure_import.repositories()) == []
