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

import pytest

from .conftest import Consumer, Publisher


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
