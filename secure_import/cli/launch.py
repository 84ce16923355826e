"""``secure-import run``: start a program with the verifying finder installed.

Behaves like ``python script.py`` and ``python -m pkg.module`` (through
:mod:`runpy`), so a program needs no change to import from signed
repositories:

- ``sys.argv`` is ``[script, *args]`` (for ``-m``: the module's file, then
  the arguments), ``__name__ == "__main__"``;
- ``sys.path[0]`` is the script's directory, or the working directory for
  ``-m``, exactly as the interpreter sets it;
- the exit status is the program's: ``sys.exit(n)`` exits with ``n``, an
  uncaught exception prints its traceback (through ``sys.excepthook``, with
  the launcher's own frames left out) and exits 1;
- a module that is refused (bad signature, not allowed, ...) is an
  ``ImportError`` like any other: traceback, exit 1.

The finder is installed by the caller (:func:`secure_import.settings.configure`
or the ``--repo`` flags) before :func:`run` is called.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Target", "resolve_target", "run"]

_SKIP_FILES = frozenset(
    {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
)


@dataclass(frozen=True)
class Target:
    """What to run: a script path or a module name, and the program's arguments."""

    kind: str  # "path" | "module"
    name: str
    args: tuple[str, ...]


def _looks_like_module(name: str) -> bool:
    parts = name.split(".")
    return all(part.isidentifier() for part in parts) and not name.endswith(".py")


def resolve_target(program: list[str], module: list[str] | None) -> Target:
    """``run script.py args``, ``run -m pkg.mod args`` or ``run pkg.mod args``.

    A first argument that is not an existing file but looks like a dotted
    module name is run as ``-m`` would run it.

    Raises:
        ValueError: nothing to run (a usage error).
    """
    if module:
        return Target("module", module[0], tuple(module[1:]))
    if not program:
        raise ValueError("give a script, -m MODULE, or a module name to run")
    first, rest = program[0], tuple(program[1:])
    if not os.path.exists(first) and _looks_like_module(first):
        return Target("module", first, rest)
    return Target("path", first, rest)


def _trim(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name not in _SKIP_FILES and os.path.abspath(name) not in _SKIP_FILES:
            break
        tb = tb.tb_next
    return tb


def _report(exc: BaseException) -> None:
    tb = _trim(exc.__traceback__)
    exc.__traceback__ = tb  # the default hook prints the exception's own traceback
    sys.excepthook(type(exc), exc, tb)


def run(target: Target) -> int:
    """Run ``target`` as ``__main__`` in this process; return its exit status.

    ``SystemExit`` raised by the program propagates unchanged (its code is the
    process's exit status).  Returns 2 when the script cannot be opened or
    1 when the module cannot be found, printing the reason to stderr.
    """
    if target.kind == "path":
        path = os.path.abspath(target.name)
        if not os.path.exists(path):
            print(
                f"secure-import run: can't open file {target.name!r}: no such file", file=sys.stderr
            )
            return 2
        sys.argv = [target.name, *target.args]
        sys.path[0:1] = [os.path.dirname(path)]

        def call() -> None:
            runpy.run_path(target.name, run_name="__main__")
    else:
        sys.argv = [target.name, *target.args]
        sys.path[0:1] = [os.getcwd()]
        try:
            spec = importlib.util.find_spec(target.name)
        except ImportError as exc:
            print(
                f"secure-import run: error while finding module {target.name!r}: {exc}",
                file=sys.stderr,
            )
            return 1
        if spec is None:
            print(f"secure-import run: no module named {target.name!r}", file=sys.stderr)
            return 1

        def call() -> None:
            runpy.run_module(target.name, run_name="__main__", alter_sys=True)

    try:
        call()
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _report(exc)
        return 130
    except BaseException as exc:  # noqa: BLE001 - the interpreter's own behaviour
        _report(exc)
        return 1
    return 0
