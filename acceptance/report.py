"""The outcome of one library's runs, and the markdown table of all of them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from libraries import Library


@dataclass
class Outcome:
    lib: Library
    local: dict[str, object]
    remote: dict[str, object]
    seconds: float
    #: materialise libraries: the remote run in the default URL mode.
    url_mode: dict[str, object] | None = None

    @property
    def mode(self) -> str:
        if self.lib.children:
            return "venv + start-up hook"
        return "`-S`, materialise" if self.lib.materialise else "`-S`"

    @property
    def children_proved(self) -> bool:
        """Child interpreters inherited the repository and imported through it,
        and none was refused (libraries that start children only)."""
        if not self.lib.children:
            return True
        ev = self.remote.get("evidence") or {}
        assert isinstance(ev, dict)
        return (
            bool(ev.get("children_inherited"))
            and bool(ev.get("child_loads"))
            and not ev.get("children_refused")
        )

    @property
    def parity(self) -> bool:
        keys = ("passed", "failed", "errors", "skipped", "xfailed")
        same = all(self.local[k] == self.remote[k] for k in keys)
        return same and self.local["failed_ids"] == self.remote["failed_ids"]

    @property
    def all_remote(self) -> bool:
        return not self.remote["local_modules"] and bool(self.remote["remote_modules"])

    @property
    def ok(self) -> bool:
        return self.parity and self.all_remote and self.children_proved


def pf(d: dict[str, object]) -> str:
    errors = f" (+{d['errors']} errors)" if d["errors"] else ""
    return f"{d['passed']}/{d['failed']}{errors}"


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| library | version | shape | run | local passed/failed | remote passed/failed "
        "| modules loaded remotely | parity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        remote_mods = len(o.remote["remote_modules"])  # type: ignore[arg-type]
        rows.append(
            f"| {o.lib.name} | {o.lib.version} | {o.lib.shape} | {o.mode} | {pf(o.local)} | "
            f"{pf(o.remote)} | {remote_mods} (local: {len(o.remote['local_modules'])}) | "  # type: ignore[arg-type]
            f"{'yes' if o.ok else 'NO'} |"
        )
    notes = []
    for o in outcomes:
        evidence = o.remote.get("evidence") or {}
        if o.lib.dependencies and isinstance(evidence, dict):
            deps = evidence.get("dependency_records") or []
            notes.append(
                f"- {o.lib.name}: served with {', '.join(o.lib.dependencies)} from "
                f"{len(evidence.get('repositories') or [])} repositories by two publishers; "
                f"dependency records {[(d['module'], d['outcome']) for d in deps]}; "
                f"{evidence.get('loads_via_declaration')} of {evidence.get('loads')} load "
                f"records name the declaration that allowed them; refusals by code: "
                f"{dict(Counter(evidence.get('refusals') or [])) or 'none'}"
            )
            for d in deps:
                notes.append(f"  - via: {d['via']}")
        if o.url_mode is not None:
            only_urls = set(o.url_mode["failed_ids"]) - set(o.local["failed_ids"])  # type: ignore[call-overload]
            notes.append(
                f"- {o.lib.name}: the same remote run without materialise (URL `__file__`): "
                f"{pf(o.url_mode)} ({len(only_urls)} tests fail that pass locally); "
                f"materialise records: "
                f"{dict(Counter(evidence.get('materialise_records') or [])) or 'none'}"
            )
        if o.lib.children and isinstance(evidence, dict):
            notes.append(
                f"- {o.lib.name}: {evidence.get('children_inherited')} child interpreters "
                f"inherited the repository through the start-up hook (audited "
                f"`child-config`/ok; refused: {evidence.get('children_refused')}); "
                f"{evidence.get('child_loads')} module loads by {evidence.get('child_pids')} "
                f"child processes; the environment had no copy of {o.lib.name} and none of "
                f"the host's site-packages on its path (checked before each run)"
            )
        for node in o.local["failed_ids"]:  # type: ignore[attr-defined]
            notes.append(f"- {o.lib.name}: `{node}` fails in the local run too (same in both).")
        for node, reason in o.lib.url_file_limits.items():
            notes.append(f"- {o.lib.name}: `{node}` cannot pass with a URL `__file__`: {reason}")
        if not o.parity:
            only_remote = sorted(
                set(o.remote["failed_ids"]) - set(o.local["failed_ids"])  # type: ignore[arg-type]
            )
            notes.append(f"- {o.lib.name}: NOT at parity; failing only remotely: {only_remote}")
        if o.remote["local_modules"]:
            notes.append(f"- {o.lib.name}: loaded locally: {o.remote['local_modules']}")
    return "\n".join([*rows, *(["", *notes] if notes else [])])
