"""The pytest plugin the acceptance run injects into every test run.

Imported by ``-p si_accept`` before any conftest, so the repository is added
before the library's conftest imports the library.  In the remote run it
asserts the library is absent locally, adds the signed repository (in
materialise mode when asked) and, at the end, writes the counts, which
modules came from where and the audit evidence (including the records of
child interpreters, which share the directories) to ``$SI_RESULT``.
"""

#: The pytest plugin injected into both runs (imported by ``-p`` before any
#: conftest, so the repository is added before the library's conftest imports it).
PLUGIN = """
import importlib.util, json, os, sys

MODE = os.environ["SI_MODE"]
TOPS = os.environ["SI_TOPS"].split(",")
URL = os.environ.get("SI_URL", "")

if MODE == "remote":
    present = [t for t in TOPS if importlib.util.find_spec(t) is not None]
    assert not present, f"library present locally: {present}"
    import secure_import
    from secure_import.store.paths import Paths
    _dirs = os.environ["SI_DIRS"]
    PATHS = Paths.default(cache_dir=_dirs + "/cache", state_dir=_dirs + "/state",
                          log_dir=_dirs + "/log")
    REPO = secure_import.add_repo(
        URL, keys=[os.environ["SI_KEY"]], ca_bundle=os.environ["SI_CA"], paths=PATHS,
        trust_dependencies=os.environ.get("SI_TRUST_DEPS") == "1",
        materialise=os.environ.get("SI_MATERIALISE") == "1",
    )
    from secure_import.hook.finder import RemoteLoader
    # Materialised trees live here: a real path under it is still a remote
    # module when its loader is ours (code runs from verified bytes).
    TREES = os.path.realpath(PATHS.cache_dir) + os.sep + "materialised" + os.sep


def _modules():
    remote, local, virtual = [], [], []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is None or spec.name.partition(".")[0] not in TOPS:
            continue
        origin = spec.origin
        if origin is None:
            virtual.append(name)  # made by the library's own importer, or a data dir
        elif URL and origin.startswith(("https://127.0.0.1:", URL)):
            remote.append(name)
        elif (URL and isinstance(spec.loader, RemoteLoader)
              and os.path.realpath(origin).startswith(TREES)):
            remote.append(name)  # materialised: a real path, verified bytes
        else:
            local.append(f"{name} ({origin})")
    return sorted(remote), sorted(local), sorted(virtual)


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    count = lambda key: len([r for r in stats.get(key, []) if getattr(r, "when", "call")])
    failed = [r.nodeid for key in ("failed", "error") for r in stats.get(key, [])]
    remote, local, virtual = _modules()
    evidence = {}
    if MODE == "remote":
        from secure_import.store.audit import AuditLog
        records = list(AuditLog(PATHS.audit_log).records())
        evidence = {
            "dependency_records": [
                {"outcome": r["outcome"], "module": r.get("module"), "via": r.get("via")}
                for r in records if r["event"] == "dependency"
            ],
            "loads": sum(1 for r in records if r["event"] == "load"),
            "loads_via_declaration": sum(
                1 for r in records if r["event"] == "load" and r.get("via")),
            "repositories": sorted(r.url for r in secure_import.repositories()),
            "refusals": [r.get("code") for r in records if r["event"] == "refuse"],
            "materialise_records": [
                r["outcome"] for r in records if r["event"] == "materialise"],
            # Child interpreters: their own audit records (same directories).
            "children_inherited": sum(
                1 for r in records
                if r["event"] == "child-config" and r["outcome"] == "ok"),
            "children_refused": sum(
                1 for r in records
                if r["event"] == "child-config" and r["outcome"] != "ok"),
            "child_loads": sum(
                1 for r in records if r["event"] == "load" and r.get("pid") != os.getpid()),
            "child_pids": len({
                r.get("pid") for r in records
                if r["event"] == "load" and r.get("pid") != os.getpid()}),
        }
    evidence["interpreter"] = {
        "executable": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
        "no_site": sys.flags.no_site, "path": sys.path,
    }
    with open(os.environ["SI_RESULT"], "w") as out:
        json.dump({
            "passed": count("passed"), "failed": count("failed"), "errors": count("error"),
            "skipped": count("skipped"), "xfailed": count("xfailed"),
            "failed_ids": sorted(set(failed)),
            "remote_modules": remote, "local_modules": local, "virtual_modules": virtual,
            "evidence": evidence,
        }, out, indent=1)
"""
