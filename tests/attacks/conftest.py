"""Attack scenarios: a legitimate repository, then one attack, then the four
post-conditions THREATS.md demands of every refusal:

1. an ``ImportError`` subclass with the expected stable code;
2. no byte of the attacker's code ran (a canary file was not written);
3. the trust state is exactly as before the attack, and the cache gained
   nothing but objects that verify against their digest;
4. exactly one audit record names the refusal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.errors import SecureImportError
from secure_import.store.cache import MARKER_CONTENT, MARKER_NAME

from ..conftest import Consumer, Publisher, canary_code


@dataclass
class Scenario:
    publisher: Publisher
    consumer: Consumer
    canary: Path
    tmp: Path

    def publish_baseline(self, **kwargs: Any) -> None:
        """``good`` (a module) and ``victim`` (a package of two modules)."""
        self.publisher.write("good.py", "VALUE = 1\n")
        self.publisher.write("victim/__init__.py", "from . import part\nOK = True\n")
        self.publisher.write("victim/part.py", "X = 1\n")
        self.publisher.publish(**kwargs)

    def evil(self, text: str = "") -> bytes:
        """Attacker code: writes the canary when (if ever) it runs."""
        return (canary_code(self.canary) + text).encode()

    def warm(self, **kwargs: Any) -> secure_import.Repository:
        """A consumer run that accepts the current repository and imports ``good``."""
        repo = self.consumer.add(**kwargs)
        importlib.import_module("good")
        return repo

    def refused(
        self,
        attempt: Callable[[], object],
        error: type[SecureImportError],
        code: str,
        *,
        before: dict[str, bytes] | None = None,
    ) -> SecureImportError:
        """Run ``attempt`` and check all four post-conditions."""
        state_before = self.consumer.snapshot() if before is None else before
        records_before = len(self.consumer.refusals())
        with pytest.raises(error) as info:
            attempt()
        exc = info.value
        assert isinstance(exc, ImportError)
        assert exc.code == code, f"expected code {code}, got {exc.code}: {exc}"
        assert not self.canary.exists(), "attacker code ran"
        after = self.consumer.snapshot()
        cache_root = str(self.consumer.paths.cache_dir / "objects")
        for path, data in state_before.items():
            assert after.get(path) == data, f"changed or removed by the attack: {path}"
        marker = str(self.consumer.paths.cache_dir / MARKER_NAME)
        for path in set(after) - set(state_before):
            # Only verified objects may appear (siblings that passed their own
            # check on the per-file path), and the cache directory's marker
            # once the directory is created; never metadata or trust state.
            if path == marker:
                assert Path(path).read_bytes() == MARKER_CONTENT
                continue
            assert path.startswith(cache_root), f"written during the attack: {path}"
        self.consumer.assert_cache_verified()
        new = self.consumer.refusals()[records_before:]
        assert len(new) == 1, f"expected one refusal record, got {new}"
        assert new[0]["code"] == code
        return exc


def import_victim() -> object:
    return importlib.import_module("victim")


@pytest.fixture
def scenario(publisher: Publisher, consumer: Consumer, canary: Path, tmp_path: Path) -> Scenario:
    return Scenario(publisher, consumer, canary, tmp_path)
