"""Offline must mean offline: with ``offline=True`` not one socket is opened.

A socket guard replaces every way the process could reach the network
(``socket.socket.connect``/``connect_ex``, ``getaddrinfo``,
``create_connection``) with one that records the attempt and fails; an
offline import from a warm cache must record none.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import secure_import

from .conftest import Consumer, Publisher, forget_remote_modules


def install_socket_guard(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way to the network record the attempt and fail; return the record."""
    attempts: list[str] = []

    def refuse(name: str) -> Callable[..., object]:
        def guard(*args: object, **kwargs: object) -> object:
            attempts.append(name)
            raise OSError(f"socket guard: {name} refused")

        return guard

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    return attempts


def _warm(publisher: Publisher, consumer: Consumer) -> None:
    publisher.write("offpkg/__init__.py", "from .core import VALUE\n")
    publisher.write("offpkg/core.py", "VALUE = 'cached'\n")
    publisher.publish()
    consumer.add()
    assert importlib.import_module("offpkg").VALUE == "cached"


def test_offline_import_from_a_warm_cache_opens_no_socket(
    publisher: Publisher, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _warm(publisher, consumer)
    publisher.server.clear_requests()
    attempts = install_socket_guard(monkeypatch)
    consumer.new_process(offline=True)
    assert importlib.import_module("offpkg").VALUE == "cached"
    assert importlib.import_module("offpkg.core").VALUE == "cached"
    assert attempts == []
    assert publisher.request_paths() == []
    manifests = [r for r in consumer.audit() if r["event"] == "manifest"]
    assert manifests[-1]["outcome"] == "offline"


def test_the_socket_guard_does_catch_an_online_import(
    publisher: Publisher, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard is real: the same import without ``offline`` tries the network."""
    publisher.write("offpkg/__init__.py", "VALUE = 1\n")
    publisher.publish()
    consumer.add()
    attempts = install_socket_guard(monkeypatch)
    with pytest.raises(ImportError):
        importlib.import_module("offpkg")
    assert attempts != []


def test_refresh_offline_from_a_configuration_file_opens_no_socket(
    publisher: Publisher,
    consumer: Consumer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``refresh = "offline"`` in an explicit configuration file: same guarantee."""
    _warm(publisher, consumer)
    config = tmp_path / "secure-import.toml"
    config.write_text(
        f'cache_dir = "{consumer.paths.cache_dir}"\n'
        f'state_dir = "{consumer.paths.state_dir}"\n'
        f'log_dir = "{consumer.paths.log_dir}"\n'
        "[repositories.off]\n"
        f'url = "{publisher.url}"\n'
        f'keys = ["{publisher.pub_path}"]\n'
        'modules = ["offpkg"]\n'
        f'ca_bundle = "{publisher.rig.ca_pem_path}"\n'
        'refresh = "offline"\n'
    )
    consumer.new_process()
    for repo in list(secure_import.repositories()):
        secure_import.remove_repo(repo)
    forget_remote_modules()
    publisher.server.clear_requests()
    monkeypatch.setenv("SECURE_IMPORT_NO_PROJECT", "1")
    for kind in ("CACHE", "STATE", "LOG"):  # the file, not the test's guard variables
        monkeypatch.delenv(f"SECURE_IMPORT_{kind}_DIR")
    attempts = install_socket_guard(monkeypatch)
    [repo] = secure_import.configure(config)
    assert repo.offline and repo.paths.cache_dir == consumer.paths.cache_dir
    assert importlib.import_module("offpkg").VALUE == "cached"
    assert attempts == [] and publisher.request_paths() == []
