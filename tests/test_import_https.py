"""The main path over real HTTPS: publish, serve on 127.0.0.1, import through the finder."""

from __future__ import annotations

import importlib
import inspect
import logging
import shutil
import sys
import traceback
from pathlib import Path

import pytest

import secure_import
from secure_import.config import MANIFEST_NAME
from secure_import.errors import NotListedError, TLSError
from secure_import.publish.serve import Response
from secure_import.store import logbridge
from secure_import.verify.pointer import POINTER_NAME

from .conftest import Consumer, Publisher, forget_remote_modules

SHOP_INIT = '''"""A remote package."""
from .cart import Cart

VERSION = "1.0"
'''
SHOP_CART = '''class Cart:
    """A shopping cart."""

    def __init__(self):
        self.items = []

    def add(self, price):
        self.items.append(price)
        return self

    def total(self):
        return sum(self.items)
'''
SHOP_UTIL_INIT = """from ..cart import Cart as _Cart
from . import fmt


def helper():
    return fmt.money(_Cart().add(2).total())
"""
SHOP_UTIL_FMT = """def money(value):
    return f"${value:.2f}"
"""
SHOP_BOOM = """def fail():
    raise ValueError("remote boom")  # the line tracebacks must show
"""


def publish_shop(publisher: Publisher) -> None:
    publisher.write("shop/__init__.py", SHOP_INIT)
    publisher.write("shop/cart.py", SHOP_CART)
    publisher.write("shop/util/__init__.py", SHOP_UTIL_INIT)
    publisher.write("shop/util/fmt.py", SHOP_UTIL_FMT)
    publisher.write("shop/boom.py", SHOP_BOOM)
    publisher.write("single.py", "ANSWER = 42\n")
    publisher.write("raiser.py", "STARTED = True\nraise RuntimeError('raised at import')\n")
    publisher.publish()


@pytest.fixture
def shop(publisher: Publisher, consumer: Consumer) -> secure_import.Repository:
    publish_shop(publisher)
    return consumer.add()


def test_single_module_imports_with_https_origin(shop: secure_import.Repository) -> None:
    import single  # type: ignore[import-not-found]

    assert single.ANSWER == 42
    assert single.__file__ == shop.url + "single.py"
    assert single.__spec__.origin == shop.url + "single.py"
    assert not hasattr(single, "__path__")


def test_package_subpackage_and_relative_imports(shop: secure_import.Repository) -> None:
    import shop.util  # type: ignore[import-not-found]

    assert shop.util.helper() == "$2.00"
    assert shop.Cart().add(3).total() == 3
    assert shop.__path__ == [shop.__spec__.origin.rsplit("/", 1)[0] + "/"]
    assert sys.modules["shop.util.fmt"].__spec__.origin.endswith("/shop/util/fmt.py")
    assert shop.util.__package__ == "shop.util"


def test_getsource_for_module_class_and_function(shop: secure_import.Repository) -> None:
    import shop.cart  # type: ignore[import-not-found]

    assert inspect.getsource(shop.cart) == SHOP_CART
    assert inspect.getsource(shop.cart.Cart).startswith("class Cart:")
    assert inspect.getsource(shop.cart.Cart.total).strip().startswith("def total(self):")
    assert inspect.getsourcefile(shop.cart.Cart) == shop.cart.__file__


def test_traceback_shows_the_remote_source_line(shop: secure_import.Repository) -> None:
    import shop.boom  # type: ignore[import-not-found]

    with pytest.raises(ValueError, match="remote boom") as info:
        shop.boom.fail()
    text = "".join(traceback.format_exception(info.value))
    assert shop.boom.__file__ in text
    assert 'raise ValueError("remote boom")  # the line tracebacks must show' in text


def test_exception_inside_remote_module_propagates_and_leaves_no_module(
    shop: secure_import.Repository, consumer: Consumer
) -> None:
    with pytest.raises(RuntimeError, match="raised at import"):
        import raiser  # type: ignore[import-not-found]  # noqa: F401
    assert "raiser" not in sys.modules
    loads = [r for r in consumer.audit() if r["event"] == "load" and r["module"] == "raiser"]
    assert len(loads) == 1  # it was verified and audited before it ran


def test_load_is_audited_with_hash_version_and_key(
    shop: secure_import.Repository, consumer: Consumer, publisher: Publisher
) -> None:
    import single  # type: ignore[import-not-found]  # noqa: F401

    record = next(r for r in consumer.audit() if r["event"] == "load")
    manifest = shop.manifest
    assert record["module"] == "single"
    assert record["url"] == shop.url + "single.py"
    assert record["sha256"] == manifest.files["single.py"].sha256
    assert record["manifest_version"] == 1
    assert record["outcome"] == "ok"
    from secure_import.store.keyfiles import load_public_key_file

    assert record["key_id"] == load_public_key_file(publisher.pub_path).key_id
    assert record["time"].endswith("Z")


def test_unlisted_submodule_is_module_not_found_without_a_request(
    shop: secure_import.Repository, publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    import shop as pkg  # type: ignore[import-not-found]  # noqa: F401

    # Even a file that exists on the server is not fetched when not listed.
    (publisher.out / "shop" / "evil.py").write_text("raise SystemExit('evil ran')\n")
    publisher.server.clear_requests()
    with pytest.raises(ModuleNotFoundError) as info:
        import shop.evil  # type: ignore[import-not-found]  # noqa: F401
    assert isinstance(info.value, NotListedError)
    assert info.value.code == "not-listed"
    assert info.value.name == "shop.evil"
    assert publisher.request_paths() == []
    assert consumer.refusals()[-1]["code"] == "not-listed"


def test_names_the_repository_does_not_own_are_not_answered(
    shop: secure_import.Repository, publisher: Publisher
) -> None:
    import single  # type: ignore[import-not-found]  # noqa: F401  (manifest now known)

    publisher.server.clear_requests()
    with pytest.raises(ModuleNotFoundError) as info:
        import definitely_not_here_xyz  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(info.value, NotListedError)
    assert publisher.request_paths() == []


def test_allowed_modules_limit_what_is_served_without_any_request(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_shop(publisher)
    consumer.add(modules=["single"])
    with pytest.raises(ModuleNotFoundError):
        import shop  # type: ignore[import-not-found]  # noqa: F401
    assert publisher.request_paths() == []


def test_second_run_downloads_no_files(publisher: Publisher, consumer: Consumer) -> None:
    publish_shop(publisher)
    repo = consumer.add()
    importlib.import_module("shop.util")
    first = publisher.request_paths()
    assert len(first) == 2  # manifest + the package bundle
    secure_import.remove_repo(repo)
    forget_remote_modules()
    publisher.server.clear_requests()

    consumer.add()  # a new process would do exactly this
    mod = importlib.import_module("shop.util")
    assert mod.helper() == "$2.00"
    requests = publisher.server.requests
    # One small request: the publisher's pointer names the cached manifest.
    assert [r.path for r in requests] == ["/" + POINTER_NAME]
    assert "if-none-match" not in requests[0].headers
    consumer.assert_cache_verified()


def test_whole_package_is_fetched_in_one_bundle_request_on_first_use(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_shop(publisher)
    consumer.add()
    importlib.import_module("shop")
    fetched = publisher.request_paths()
    assert len(fetched) == 2
    assert fetched[0] == "/secure-import-manifest.json"
    assert fetched[1].startswith("/secure-import-bundles/shop.")
    consumer.assert_cache_verified()
    assert len(consumer.cached_objects()) == 5  # every module, each under its own hash
    # ...and nothing else is requested when the rest is imported.
    publisher.server.clear_requests()
    importlib.import_module("shop.util.fmt")
    importlib.import_module("shop.boom")
    assert publisher.request_paths() == []


def test_without_bundles_the_package_is_fetched_file_by_file(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_shop(publisher)
    for bundle in (publisher.out / "secure-import-bundles").iterdir():
        bundle.unlink()  # a host that serves only the files
    consumer.add()
    assert importlib.import_module("shop.util").helper() == "$2.00"
    fetched = {p for p in publisher.request_paths() if p.endswith(".py")}
    assert fetched == {
        "/shop/__init__.py",
        "/shop/cart.py",
        "/shop/util/__init__.py",
        "/shop/util/fmt.py",
        "/shop/boom.py",
    }


def test_offline_repository_imports_from_cache_without_any_request(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_shop(publisher)
    repo = consumer.add()
    importlib.import_module("shop.util")
    secure_import.remove_repo(repo)
    forget_remote_modules()
    publisher.server.clear_requests()
    consumer.add(offline=True)
    assert importlib.import_module("shop.util").helper() == "$2.00"
    assert publisher.request_paths() == []
    manifest_records = [r for r in consumer.audit() if r["event"] == "manifest"]
    assert manifest_records[-1]["outcome"] == "offline"


def test_an_emptied_cached_manifest_is_fetched_again_not_asked_about(
    publisher: Publisher, consumer: Consumer
) -> None:
    # A cached envelope truncated to nothing (a full disk) is not worth asking
    # about: the manifest is fetched in full and heals it.
    publish_shop(publisher)
    repo = consumer.add()
    importlib.import_module("shop.util")
    cached = consumer.paths.cache_dir / "metadata" / repo.id / MANIFEST_NAME
    cached.write_bytes(b"")
    publisher.server.clear_requests()
    consumer.new_process()

    assert importlib.import_module("shop.util").helper() == "$2.00"

    [request] = [r for r in publisher.server.requests if r.path == "/" + MANIFEST_NAME]
    assert "if-none-match" not in request.headers
    assert "/" + POINTER_NAME not in publisher.request_paths()
    assert cached.read_bytes() == publisher.manifest_bytes()


def test_a_ca_bundle_that_cannot_be_loaded_is_a_failed_request_like_any_other(
    publisher: Publisher, consumer: Consumer, tmp_path: Path
) -> None:
    # Warm: the cached manifest stands in (audited as offline, with the TLS
    # check named); cold: the import fails with that error.  Nothing reached
    # the server either way.
    publish_shop(publisher)
    consumer.add()
    importlib.import_module("shop.util")
    bad_ca = tmp_path / "not-a-ca.pem"
    bad_ca.write_text("not a certificate\n")
    consumer.new_process(ca_bundle=bad_ca)
    publisher.server.clear_requests()

    assert importlib.import_module("shop.util").helper() == "$2.00"

    assert publisher.request_paths() == []
    record = [r for r in consumer.audit() if r["event"] == "manifest"][-1]
    assert record["outcome"] == "offline" and "cannot load the CA bundle" in record["message"]

    shutil.rmtree(consumer.paths.cache_dir)
    consumer.new_process(ca_bundle=bad_ca)
    with pytest.raises(TLSError) as caught:
        importlib.import_module("shop.util")
    assert caught.value.check == "ca-bundle"
    assert publisher.request_paths() == []


def test_context_manager_removes_the_repository(publisher: Publisher, consumer: Consumer) -> None:
    publish_shop(publisher)
    with secure_import.repo(
        publisher.url,
        keys=[publisher.pub_path],
        ca_bundle=publisher.rig.ca_pem_path,
        paths=consumer.paths,
    ) as repo:
        assert repo in secure_import.repositories()
        assert importlib.import_module("single").ANSWER == 42
    assert repo not in secure_import.repositories()


_AUDIT_EVENTS: list[tuple[str, tuple[object, ...]]] = []


def _audit_hook(event: str, args: tuple[object, ...]) -> None:
    if event.startswith("secure_import."):
        _AUDIT_EVENTS.append((event, args))


sys.addaudithook(_audit_hook)  # hooks cannot be removed; this one only records ours


def test_pep578_hooks_see_every_load(shop: secure_import.Repository) -> None:
    _AUDIT_EVENTS.clear()
    importlib.import_module("shop.util")
    loads = [args for event, args in _AUDIT_EVENTS if event == "secure_import.load"]
    assert {args[0] for args in loads} == {"shop", "shop.cart", "shop.util", "shop.util.fmt"}
    assert all(str(args[1]).startswith(shop.url) for args in loads)
    assert ("secure_import.manifest", (None, shop.url + "secure-import-manifest.json", "ok")) in (
        _AUDIT_EVENTS
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_audit_record_is_also_a_logging_record(
    shop: secure_import.Repository, consumer: Consumer
) -> None:
    """The documented bridge: an operator adds a handler and sees each record,
    INFO for ``ok`` and WARNING for a refusal, with the fields attached."""
    handler = _Collect()
    logbridge.logger.addHandler(handler)
    try:
        importlib.import_module("shop")
        with pytest.raises(NotListedError):
            importlib.import_module("shop.absent")
    finally:
        logbridge.logger.removeHandler(handler)
    written = consumer.audit()
    assert [r.secure_import for r in handler.records] == written  # type: ignore[attr-defined]
    assert [r["event"] for r in written] == ["manifest", "load", "load", "refuse"]
    load = handler.records[1]
    assert load.levelno == logging.INFO and load.audit_module == "shop"  # type: ignore[attr-defined]
    refusal = handler.records[-1]
    assert refusal.levelno == logging.WARNING
    assert refusal.audit_code == "not-listed"  # type: ignore[attr-defined]
    assert "code=not-listed" in refusal.getMessage()


def test_fetch_stats_time_the_requests_an_import_waits_for(
    publisher: Publisher, consumer: Consumer
) -> None:
    """The benchmark separates an import's network share with ``stats.seconds``:
    a manifest held back 0.3 s must show up there, and an offline repository
    spends nothing."""
    publish_shop(publisher)
    body = (publisher.out / secure_import.config.MANIFEST_NAME).read_bytes()
    publisher.respond(secure_import.config.MANIFEST_NAME, Response(body=body, delay=0.3))
    repo = consumer.add()
    assert importlib.import_module("single").ANSWER == 42  # type: ignore[attr-defined]
    stats = repo.fetcher.stats
    assert stats.requests == 2  # the delayed manifest, then the one-module package
    assert 0.3 <= stats.seconds < 10
    secure_import.remove_repo(repo)
    forget_remote_modules()

    offline = consumer.add(offline=True)
    assert importlib.import_module("single").ANSWER == 42  # type: ignore[attr-defined]
    assert offline._fetcher is None  # no client was even built
