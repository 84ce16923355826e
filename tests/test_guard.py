"""The re-entrancy marker and the worker thread that carries the manifest
request while the caller prepares the cached copy (narrow units; the end-to-end
behaviour is in tests/test_bytecode.py, "the freshness wait")."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from secure_import._guard import busy, is_busy
from secure_import.errors import ConnectionFailedError
from secure_import.transport.background import InBackground


def test_busy_marks_only_the_thread_that_entered_it() -> None:
    seen: list[bool] = []
    with busy():
        with busy():
            assert is_busy()
        assert is_busy()
        other = threading.Thread(target=lambda: seen.append(is_busy()))
        other.start()
        other.join()
    assert not is_busy()
    assert seen == [False]


def test_the_call_runs_in_another_thread_marked_busy_and_its_value_comes_back() -> None:
    where: list[tuple[str, bool]] = []

    def call(ready: Callable[[], None]) -> int:
        where.append((threading.current_thread().name, is_busy()))
        ready()
        return 42

    request = InBackground(call)
    request.wait_ready()
    assert request.result() == 42
    assert where == [("secure-import-request", True)]
    assert not is_busy()  # the caller's thread was never marked


def test_an_error_in_the_call_is_raised_in_the_callers_thread_and_ready_is_still_given() -> None:
    def call(ready: Callable[[], None]) -> int:
        raise ConnectionFailedError("refused", check="connect", url="https://repo.example/")

    request = InBackground(call)
    request.wait_ready()  # returns although the call never said ready: it ended
    with pytest.raises(ConnectionFailedError) as caught:
        request.result()
    assert caught.value.url == "https://repo.example/"


def test_wait_ready_returns_while_the_call_is_still_waiting() -> None:
    go_on = threading.Event()

    def call(ready: Callable[[], None]) -> str:
        ready()
        assert go_on.wait(10)
        return "answered"

    request = InBackground(call)
    request.wait_ready()
    # The call has not finished (it waits for go_on), yet the caller may work.
    go_on.set()
    assert request.result() == "answered"


def test_without_background_the_call_runs_in_result_in_the_callers_thread() -> None:
    where: list[str] = []

    def call(ready: Callable[[], None]) -> str:
        where.append(threading.current_thread().name)
        ready()
        return "here"

    request = InBackground(call, background=False)
    request.wait_ready()  # nothing to wait for
    assert where == []
    assert request.result() == "here"
    assert where == [threading.current_thread().name]


def test_when_no_thread_can_be_started_the_call_runs_in_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    where: list[str] = []

    def call(ready: Callable[[], None]) -> str:
        where.append(threading.current_thread().name)
        return "done anyway"

    request = InBackground(call)
    request.wait_ready()
    assert request.result() == "done anyway"
    assert where == [threading.current_thread().name]
