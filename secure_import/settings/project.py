"""The project layer: a configuration file that arrives with the checked-out
code, so it may only ever tighten trust (THREATS H2, H8).

It may add repositories with pins and restrict existing ones (fewer modules,
a higher threshold, offline, fewer mirrors, the narrower ``on-not-found``
failover), never set an ``unsafe_*`` option, name credentials or an S3
endpoint, move the cache, state or log directory, raise the clock slack or
loosen the transport limits, leave frozen mode, replace a lock file, claim a
module name another repository already serves, or lower freshness or list
mirrors a trusted layer did not list unless a trusted layer allows it (every
request to a mirror tells a third party which names you import: dependency
confusion, privacy).  Every refusal names the file and the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from secure_import.config import DEFAULT_CLOCK_SLACK, DEFAULT_LIMITS
from secure_import.errors import SecureImportError
from secure_import.settings.layers import _Merged, _normal
from secure_import.settings.parse import _fail, _Layer
from secure_import.store.keyfiles import load_public_key_file
from secure_import.transport.mirrors import DEFAULT_FALLBACK, FALLBACKS


def _served_by(merged: _Merged) -> dict[str, str]:
    """Top-level name -> repository name, for the names trusted layers let be served."""
    out: dict[str, str] = {}
    for name, fields in merged.repos.items():
        for module in fields.get("modules") or ():
            out.setdefault(module, name)
    return out


def _apply_project(merged: _Merged, layer: _Layer) -> None:
    """The project layer: refuse anything that would widen trust, then apply."""
    label = layer.label
    forbidden = {
        "cache_dir": "would move the cache (and what `cache clear` deletes); a committed "
        "cache could stand in for the server",
        "state_dir": "would reset the trust state (high-water marks, rotated roots)",
        "log_dir": "would move the audit log",
        "site": "would change which directories hold trust state",
        "cache_readonly": "would turn off the audit witness kept in the cache (THREATS H7)",
        "unsafe_clock_slack": "unsafe_* settings are refused in a project file",
        "allow_project_freshness": "only the user, site or explicit configuration decides "
        "what a project file may ask for",
        "allow_project_mirrors": "only the user, site or explicit configuration decides "
        "what a project file may ask for",
    }
    for key, why in forbidden.items():
        if key in layer.values:
            raise _fail(label, key, f"a project file may only tighten trust: it {why}")
    allowed = bool(merged.values.get("allow_project_freshness"))
    lowering: list[str] = [key for key in ("frozen", "lock_file") if key in layer.values]
    if layer.values.get("frozen") is False:
        lowering.remove("frozen")  # leaving frozen mode is refused below
    lowering += [
        f"repositories.{name}.refresh"
        for name, fields in layer.repos.items()
        if fields.get("refresh") == "offline"
    ]
    if lowering and not allowed:
        raise _fail(
            label,
            lowering[0],
            "a project file may not lower freshness (frozen mode, a lock file, offline "
            "repositories) unless the user, site or explicit configuration sets "
            "allow_project_freshness = true: with a committed lock it could hold a "
            "trusted repository on an old release without asking the server",
        )
    for key, tighter, unit in (
        ("min_throughput", "higher", "bytes/s"),
        ("throughput_window", "lower", "s"),
        ("import_deadline", "lower", "s"),
        ("failover_after", "lower", "s"),
    ):
        if key not in layer.values:
            continue
        current_limit = merged.values.get(key, getattr(DEFAULT_LIMITS, key))
        value = layer.values[key]
        if (value < current_limit) if tighter == "higher" else (value > current_limit):
            raise _fail(
                label,
                key,
                f"a project file may only tighten the transport limits ({key} only {tighter})",
                expected=f"{'>=' if tighter == 'higher' else '<='} {current_limit:g} {unit}",
                got=f"{value:g} {unit}",
            )
    slack = layer.values.get("clock_slack")
    current = merged.values.get("clock_slack", DEFAULT_CLOCK_SLACK)
    if slack is not None and slack > current:
        raise _fail(
            label,
            "clock_slack",
            "a project file may only lower the clock slack",
            expected=f"<= {current.total_seconds():g} s",
            got=f"{slack.total_seconds():g} s",
        )
    if layer.values.get("frozen") is False and merged.values.get("frozen"):
        raise _fail(label, "frozen", "a project file may not leave frozen mode")
    if (
        "lock_file" in layer.values
        and "lock_file" in merged.values
        and (layer.values["lock_file"] != merged.values["lock_file"])
    ):
        raise _fail(
            label,
            "lock_file",
            "a project file may not replace the lock file set by "
            f"{merged.origins.get('lock_file')}",
        )
    served = _served_by(merged)
    urls = {_normal(fields.get("url")): name for name, fields in merged.repos.items()}
    for name, fields in layer.repos.items():
        where = f"repositories.{name}"
        for unsafe in ("unsafe_all_modules", "unsafe_undeclared_imports"):
            if fields.get(unsafe):
                raise _fail(
                    label,
                    f"{where}.{unsafe}",
                    "unsafe_* settings are refused in a project file",
                )
        if fields.get("trust_dependencies", "no") != "no":
            base_follow = merged.repos.get(name, {}).get("trust_dependencies", "no")
            order = ("no", "direct", "transitive")
            if order.index(fields["trust_dependencies"]) > order.index(base_follow):
                raise _fail(
                    label,
                    f"{where}.trust_dependencies",
                    "following dependency declarations widens trust; only the user, site "
                    "or explicit configuration may turn it on",
                )
        if "auth" in fields:
            raise _fail(
                label,
                f"{where}.auth",
                "credentials may only be configured in the user, site or explicit "
                "configuration, or the environment: a project file could send them "
                "to a server of its choosing",
            )
        if "s3_endpoint" in fields:
            raise _fail(
                label,
                f"{where}.s3_endpoint",
                "an S3 endpoint may only be configured in the user, site or explicit "
                "configuration, or the environment: the AWS credentials sign every request "
                "to it, and a project file could choose the server",
            )
        base = merged.repos.get(name)
        _check_mirrors(label, where, base, fields, bool(merged.values.get("allow_project_mirrors")))
        if base is None:
            other = urls.get(_normal(fields.get("url")))
            if other is not None:
                raise _fail(
                    label,
                    f"{where}.url",
                    f"this URL is already configured as "
                    f"repositories.{other} by {merged.repo_sources[other]}; restate it "
                    "under that name to restrict it",
                )
            if "modules" not in fields:
                raise _fail(
                    label,
                    f"{where}.modules",
                    "a repository added by a project file must list its modules",
                )
            for module in sorted(fields["modules"]):
                if module in served:
                    raise _fail(
                        label,
                        f"{where}.modules",
                        f"{module!r} is already served by repositories."
                        f"{served[module]}; a project file may not claim it",
                    )
            continue
        _check_restriction(label, where, base, fields)
    merged.files.append(str(layer.path))
    for key, value in layer.values.items():
        merged.values[key] = value
        merged.origins[key] = label
    for name, fields in layer.repos.items():
        merged.repos.setdefault(name, {}).update(fields)
        merged.repo_sources[name] = label


def _check_restriction(
    label: str, where: str, base: dict[str, Any], fields: dict[str, Any]
) -> None:
    """A project restating a trusted repository may only narrow it."""
    if "keys" in fields and _key_ids(fields["keys"]) != _key_ids(base.get("keys", ())):
        raise _fail(
            label,
            f"{where}.keys",
            "a project file may not change the keys pinned for a repository configured elsewhere",
        )
    for key in (
        "url",
        "root_version",
        "ca_bundle",
        "truststore",
        "client_cert",
        "client_key",
        "identities",
        "sigstore_trusted_root",
        "s3_endpoint",
        "s3_region",
    ):
        if key in fields and fields[key] != base.get(key, _DEFAULTS.get(key)):
            raise _fail(
                label,
                f"{where}.{key}",
                "a project file may not change this field of "
                "a repository configured elsewhere (only narrow modules, raise the "
                "threshold or set refresh)",
            )
    if "threshold" in fields and fields["threshold"] < base.get("threshold", 1):
        raise _fail(
            label,
            f"{where}.threshold",
            "a project file may not lower the threshold",
            expected=f">= {base.get('threshold', 1)}",
            got=fields["threshold"],
        )
    if "modules" in fields and base.get("modules") is not None:
        extra = sorted(fields["modules"] - base["modules"])
        if extra:
            raise _fail(
                label,
                f"{where}.modules",
                "a project file may not allow more modules "
                f"than the repository's own configuration: {', '.join(extra)}",
            )


def _check_mirrors(
    label: str,
    where: str,
    base: dict[str, Any] | None,
    fields: dict[str, Any],
    allowed: bool,
) -> None:
    """A project file may drop mirrors and narrow the failover policy; it may
    list a mirror a trusted layer did not list for this repository, or widen
    the policy, only when a trusted layer sets ``allow_project_mirrors``: a
    mirror of its choosing would learn every name the program imports (and
    when), and could be a public host for private names."""
    if allowed:
        return
    trusted = frozenset(() if base is None else base.get("mirrors", ()))
    added = [m for m in fields.get("mirrors", ()) if m not in trusted]
    if added:
        raise _fail(
            label,
            f"{where}.mirrors",
            "a project file may only remove mirrors a trusted layer listed for this "
            "repository: a mirror learns every name you import (set "
            "allow_project_mirrors = true in the user, site or explicit configuration "
            "to let project files add them)",
            got=", ".join(added),
        )
    before = DEFAULT_FALLBACK if base is None else base.get("fallback", DEFAULT_FALLBACK)
    if FALLBACKS.index(fields.get("fallback", before)) < FALLBACKS.index(before):
        raise _fail(
            label,
            f"{where}.fallback",
            "a project file may only narrow the failover policy (to on-not-found)",
            expected=before,
            got=fields["fallback"],
        )


_DEFAULTS: dict[str, Any] = {
    "truststore": False,
    "threshold": 1,
    "refresh": "always",
    "root_version": 1,
}


def _key_ids(paths: Sequence[Path]) -> frozenset[str] | None:
    """The key ids of key files (``None`` if one is unreadable: never equal)."""
    try:
        return frozenset(load_public_key_file(p).key_id for p in paths)
    except SecureImportError:
        return None
