"""THREATS.md F1-F7 (files) and N1-N3 (names)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import (
    ConfigError,
    HashMismatchError,
    LengthMismatchError,
    NotListedError,
    UnsafePathError,
)
from secure_import.hook.finder import get_finder

from .conftest import Scenario, import_victim
from .crafting import payload_of, resign


def test_f1_altered_file_is_refused_and_no_sibling_runs(scenario: Scenario) -> None:
    marker = scenario.tmp / "legit-init-ran"
    scenario.publisher.write("good.py", "VALUE = 1\n")
    scenario.publisher.write(
        "victim/__init__.py",
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nfrom . import part\n",
    )
    scenario.publisher.write("victim/part.py", "X = 1\n")
    scenario.publisher.publish()
    part = (scenario.publisher.out / "victim/part.py").read_bytes()
    evil = scenario.evil()[: len(part)].ljust(len(part), b"#")
    scenario.publisher.tamper("victim/part.py", evil)
    scenario.consumer.add()
    importlib.import_module("good")
    exc = scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    assert exc.url is not None and exc.url.endswith("victim/part.py")
    assert not marker.exists(), "the legitimate sibling ran although its package failed"
    assert "victim" not in sys.modules


def test_f1_altered_file_with_same_length_names_both_hashes(scenario: Scenario) -> None:
    scenario.publish_baseline()
    original = (scenario.publisher.out / "victim/__init__.py").read_bytes()
    evil = scenario.evil()
    scenario.publisher.tamper("victim/__init__.py", evil[: len(original)].ljust(len(original)))
    scenario.warm()  # the (valid) manifest is accepted before the attack
    exc = scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    manifest = secure_import.repositories()[0].manifest
    assert str(exc.expected) == manifest.files["victim/__init__.py"].sha256
    assert "expected:" in str(exc) and "got:" in str(exc)


def test_f2_correct_bytes_followed_by_extra_bytes_are_refused(scenario: Scenario) -> None:
    scenario.publish_baseline()
    original = (scenario.publisher.out / "victim/__init__.py").read_bytes()
    scenario.publisher.tamper("victim/__init__.py", original + b"\n" + scenario.evil())
    scenario.warm()  # the (valid) manifest is accepted before the attack
    scenario.refused(import_victim, LengthMismatchError, "length-mismatch")


def test_f3_unlisted_module_is_not_found_and_not_requested(scenario: Scenario) -> None:
    scenario.publish_baseline()
    (scenario.publisher.out / "victim" / "evil.py").write_bytes(scenario.evil())
    scenario.consumer.add()
    import_victim()
    scenario.publisher.server.clear_requests()
    exc = scenario.refused(
        lambda: importlib.import_module("victim.evil"), NotListedError, "not-listed"
    )
    assert isinstance(exc, ModuleNotFoundError)
    assert scenario.publisher.request_paths() == []


BAD_PATHS = [
    "../x.py",  # F4 traversal
    "victim/../../x.py",
    "victim/%2e%2e/x.py",
    "victim\\x.py",
    "/etc/x.py",  # F5 absolute
    "C:/x.py",
    "victim/a\x00b.py",
    "victim/a\nb.py",
    "victim/Part.py",  # F6 collides with victim/part.py after case folding
    "victim/x.so",  # F7 compiled / magic files
    "victim/x.pyd",
    "victim/x.pyc",
    "victim/x.pth",
]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_f4_to_f7_one_bad_path_refuses_the_whole_manifest(scenario: Scenario, bad: str) -> None:
    scenario.publish_baseline()
    payload = payload_of(scenario.publisher)
    payload["files"][bad] = {"sha256": "0" * 64, "length": 1}
    resign(scenario.publisher, payload, [scenario.publisher.private_key])
    scenario.consumer.add()
    # Even `good`, whose own entry is fine, is refused: the manifest is refused whole.
    scenario.refused(lambda: importlib.import_module("good"), UnsafePathError, "unsafe-path")


def test_f7_publisher_refuses_compiled_files(scenario: Scenario) -> None:
    scenario.publisher.write("victim/__init__.py", "")
    scenario.publisher.write("victim/native.so", b"\x7fELF")
    with pytest.raises(UnsafePathError):
        scenario.publisher.publish()


def test_n1_name_the_user_did_not_allow_is_not_served(scenario: Scenario) -> None:
    scenario.publish_baseline()
    scenario.consumer.add(modules=["good"])
    scenario.publisher.server.clear_requests()
    with pytest.raises(ModuleNotFoundError) as info:
        import_victim()
    assert not isinstance(info.value, NotListedError)  # not ours: nobody served it
    assert scenario.publisher.request_paths() == []
    assert not scenario.canary.exists()


@pytest.mark.parametrize("name", ["sitecustomize", "usercustomize", "json", "secure_import"])
def test_n2_never_remote_names_are_never_served(scenario: Scenario, name: str) -> None:
    scenario.publish_baseline()
    payload = payload_of(scenario.publisher)
    # A manifest, validly signed, that claims the name anyway.
    payload["provides"] = sorted({*payload["provides"], name})
    payload["files"][f"{name}.py"] = payload["files"]["good.py"]
    resign(scenario.publisher, payload, [scenario.publisher.private_key])
    scenario.consumer.add()
    scenario.publisher.server.clear_requests()
    assert get_finder().find_spec(name, None) is None
    assert scenario.publisher.request_paths() == []


@pytest.mark.parametrize("name", ["sitecustomize", "os", "secure_import"])
def test_n2_allowing_a_never_remote_name_is_a_configuration_error(
    scenario: Scenario, name: str
) -> None:
    with pytest.raises(ConfigError):
        scenario.consumer.add(modules=[name])


def test_n2_publisher_refuses_to_sign_a_standard_library_name(scenario: Scenario) -> None:
    scenario.publisher.write("json.py", "x = 1\n")
    with pytest.raises(UnsafePathError):
        scenario.publisher.publish()


def test_n3_failure_for_an_owned_name_never_falls_through(
    scenario: Scenario, tmp_path: Path
) -> None:
    scenario.publish_baseline()
    original = (scenario.publisher.out / "victim/__init__.py").read_bytes()
    scenario.publisher.tamper(
        "victim/__init__.py", scenario.evil()[: len(original)].ljust(len(original))
    )
    scenario.warm()  # the (valid) manifest is accepted before the attack
    # A second, healthy source of `victim` further down: it must not be consulted.
    fallback = tmp_path / "fallback"
    (fallback / "victim").mkdir(parents=True)
    (fallback / "victim" / "__init__.py").write_text("FALLBACK = True\n")
    sys.meta_path.append(_DirFinder(fallback))
    try:
        scenario.refused(import_victim, HashMismatchError, "hash-mismatch")
    finally:
        sys.meta_path.pop()
    assert "victim" not in sys.modules


class _DirFinder:
    """A finder after ours, standing for any other source of modules."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(name, [str(self.path)])
