"""Configuration trust (issue 14, THREATS H1 and H2): which configuration
files are trusted at all, and what a project file may ask for.

``test_project_rule_table`` has one case per row of the rule table in
docs/operations.md ("What a project file may set"); the end-to-end tests run
the attacks the issue demonstrated through ``secure-import run``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from secure_import.errors import ConfigError
from secure_import.settings import IgnoredConfigWarning, load_settings
from secure_import.store.audit import AuditLog

from .clirunner import run_cli
from .conftest import Publisher, canary_code
from .test_settings import World

NOBODY = 65534


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _user(world: World, extra: str = "") -> None:
    world.write(
        world.user,
        extra
        + world.repo("corp", "https://corp.example/", world.pub_a, modules='["acme", "tools"]'),
    )


# --- H2: the rule table ---------------------------------------------------------------
#
# (row id, project file text, accepted without allow_project_freshness,
#  accepted with it).  Keep in step with docs/operations.md.
RULES = [
    ("cache_dir", 'cache_dir = "committed-cache"\n', False, False),
    ("state_dir", 'state_dir = "fresh-state"\n', False, False),
    ("log_dir", 'log_dir = "elsewhere"\n', False, False),
    ("site", "site = true\n", False, False),
    ("cache_readonly", "cache_readonly = true\n", False, False),
    ("allow_project_freshness", "allow_project_freshness = true\n", False, False),
    ("frozen-with-own-lock", 'frozen = true\nlock_file = "project.lock"\n', False, True),
    ("lock_file", 'lock_file = "project.lock"\n', False, True),
    ("refresh-offline", '[repositories.corp]\nrefresh = "offline"\n', False, True),
    ("refresh-always", '[repositories.corp]\nrefresh = "always"\n', True, True),
    ("clock_slack-lower", "clock_slack = 60\n", True, True),
    ("clock_slack-higher", "clock_slack = 1800\n", False, False),
    ("min_throughput-higher", "min_throughput = 4096\n", True, True),
    ("min_throughput-lower", "min_throughput = 10\n", False, False),
    ("throughput_window-lower", "throughput_window = 5\n", True, True),
    ("throughput_window-higher", "throughput_window = 60\n", False, False),
    ("import_deadline-lower", "import_deadline = 30\n", True, True),
    ("import_deadline-higher", "import_deadline = 600\n", False, False),
    ("failover_after-lower", "failover_after = 1\n", True, True),
    ("failover_after-higher", "failover_after = 30\n", False, False),
    ("unsafe_clock_slack", "unsafe_clock_slack = 86400\n", False, False),
    ("auth", '[repositories.corp]\nauth = { env = "HOME" }\n', False, False),
    ("modules-narrower", '[repositories.corp]\nmodules = ["acme"]\n', True, True),
    ("modules-wider", '[repositories.corp]\nmodules = ["acme", "evil"]\n', False, False),
]


@pytest.mark.parametrize(
    ("text", "without", "with_allow"),
    [pytest.param(text, a, b, id=row) for row, text, a, b in RULES],
)
def test_project_rule_table(world: World, text: str, without: bool, with_allow: bool) -> None:
    """H2: each row of the documented table, with and without the trusted
    layer's ``allow_project_freshness``."""
    for allow, expected in ((False, without), (True, with_allow)):
        _user(world, "allow_project_freshness = true\n" if allow else "")
        world.write(world.project / "secure-import.toml", text)
        if expected:
            settings = world.load()
            assert str(world.project / "secure-import.toml") in settings.files
        else:
            with pytest.raises(ConfigError) as info:
                world.load()
            assert "secure-import.toml" in str(info.value)


def test_project_may_not_leave_frozen_mode_or_replace_the_lock_even_when_allowed(
    world: World,
) -> None:
    _user(world, 'allow_project_freshness = true\nfrozen = true\nlock_file = "u.lock"\n')
    for text, needle in (
        ("frozen = false\n", "may not leave frozen mode"),
        ('lock_file = "project.lock"\n', "may not replace the lock file"),
    ):
        world.write(world.project / "secure-import.toml", text)
        with pytest.raises(ConfigError, match=needle):
            world.load()


def test_freshness_settings_are_accepted_from_user_site_and_explicit_files(
    world: World,
) -> None:
    """The same settings a project file may not make are the user's to make."""
    world.write(
        world.user,
        'cache_dir = "c"\nfrozen = true\nlock_file = "u.lock"\n'
        + world.repo("corp", "https://corp.example/", world.pub_a, extra='refresh = "offline"'),
    )
    settings = world.load()
    assert settings.frozen and settings.cache_dir == world.user.parent / "c"
    assert settings.repositories[0].offline


def test_transport_limits_reach_the_repositories(world: World) -> None:
    world.write(world.user, "min_throughput = 2048\nthroughput_window = 5\nimport_deadline = 60\n")
    limits = world.load().limits
    assert (limits.min_throughput, limits.throughput_window, limits.import_deadline) == (
        2048,
        5.0,
        60.0,
    )


# --- schema types ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["keys", "modules"])
def test_a_string_where_a_list_is_documented_is_refused(world: World, key: str) -> None:
    keys = f'"{world.pub_a}"' if key == "keys" else f'["{world.pub_a}"]'
    modules = '"acme"' if key == "modules" else '["acme"]'
    world.write(
        world.user,
        f'[repositories.corp]\nurl = "https://corp.example/"\nkeys = {keys}\nmodules = {modules}\n',
    )
    with pytest.raises(ConfigError, match=f"{key}: must be a list"):
        world.load()


# --- duplicate URLs on the normalised spelling --------------------------------------------


@pytest.mark.parametrize(
    "second",
    ["https://CORP.example/", "https://corp.example:443/", "https://corp.example"],
)
def test_two_spellings_of_one_url_are_one_repository(world: World, second: str) -> None:
    world.write(
        world.user,
        world.repo("a", "https://corp.example/", world.pub_a)
        + world.repo("b", second, world.pub_b, modules='["other"]'),
    )
    with pytest.raises(ConfigError, match="same URL is configured twice"):
        world.load()


def test_a_project_file_cannot_add_another_spelling_of_a_trusted_url(world: World) -> None:
    _user(world)
    world.write(
        world.project / "secure-import.toml",
        '[repositories.mine]\nurl = "https://CORP.example:443/"\nkeys = ["keys/a.pub"]\n'
        'modules = ["zzz"]\n',
    )
    with pytest.raises(ConfigError, match=r"already configured as repositories\.corp"):
        world.load()


# --- H1: untrusted configuration files ------------------------------------------------


def _planted(world: World, *, owner: int | None, dir_mode: int) -> Path:
    shared = world.project
    os.chmod(shared, dir_mode)
    if dir_mode & 0o020:
        os.chown(shared, -1, NOBODY)  # a group others are in, not the user's own
    path = world.write(
        shared / "secure-import.toml",
        world.repo("evil", "https://evil.example/", Path("keys/a.pub"), modules='["ujson"]'),
    )
    if owner is not None:
        os.chown(path, owner, owner)
    return path


@pytest.mark.parametrize(
    ("owner", "dir_mode", "why"),
    [
        pytest.param(NOBODY, 0o1777, f"owned by uid {NOBODY}", id="other-user-in-sticky-dir"),
        pytest.param(None, 0o777, "another user can write", id="ours-in-world-writable-dir"),
        pytest.param(None, 0o775, "another user can write", id="ours-in-group-writable-dir"),
    ],
)
def test_h1_untrusted_project_file_is_ignored_with_warning_and_audit(
    world: World, owner: int | None, dir_mode: int, why: str
) -> None:
    path = _planted(world, owner=owner, dir_mode=dir_mode)
    log_dir = world.tmp / "log"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(
            cwd=world.sub,
            env={"SECURE_IMPORT_LOG_DIR": str(log_dir)},
            user_file=world.user,
            site_file=world.site,
        )
    assert settings.repositories == ()  # no repository, no key from it
    assert str(path) not in settings.files
    assert len(settings.ignored) == 1 and why in settings.ignored[0]
    assert any(issubclass(w.category, IgnoredConfigWarning) for w in caught)
    (record,) = AuditLog(log_dir / "audit.jsonl").records()
    assert record["event"] == "config-ignored" and record["code"] == "config-untrusted"
    assert str(path) in str(record["message"])


def test_h1_untrusted_user_or_explicit_file_is_refused(world: World) -> None:
    """Files the user chose are refused, not skipped: the user must fix them."""
    world.write(world.user, "clock_slack = 1\n")
    os.chmod(world.user.parent, 0o777)
    with pytest.raises(ConfigError) as info:
        world.load()
    assert info.value.check == "config-file-trust"
    os.chmod(world.user.parent, 0o700)
    explicit = world.write(world.tmp / "other" / "x.toml", "clock_slack = 1\n")
    os.chown(explicit, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"owned by uid {NOBODY}"):
        world.load(explicit)


APP = """\
try:
    import ujson
except ImportError:
    ujson = None
print("ujson:", ujson)
"""


def test_h1_planted_project_file_does_not_run_its_code_through_secure_import_run(
    tmp_path: Path, publisher: Publisher
) -> None:
    """The demonstrated attack: another user's file in a sticky shared
    directory adds a repository pinned to their key for a name the victim
    imports optionally.  Before: their code ran, exit 0, no warning."""
    canary = tmp_path / "canary"
    publisher.write("ujson.py", canary_code(canary))
    publisher.publish()
    shared = tmp_path / "x"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = shared / "secure-import.toml"
    planted.write_text(
        f'[repositories.theirs]\nurl = "{publisher.url}"\nkeys = ["{publisher.pub_path}"]\n'
        f'ca_bundle = "{publisher.rig.ca_pem_path}"\nmodules = ["ujson"]\n'
    )
    os.chown(planted, NOBODY, NOBODY)
    victim = shared / "victim"
    victim.mkdir()
    (victim / "app.py").write_text(APP)
    result = run_cli(tmp_path, "run", "app.py", cwd=victim)
    assert result.returncode == 0, result.stderr
    assert "ujson: None" in result.stdout
    assert not canary.exists(), "the planted repository's code ran"
    assert "ignored the project configuration file" in result.stderr
    assert publisher.request_paths() == []  # its server was never contacted
    log = Path(os.environ["SECURE_IMPORT_LOG_DIR"]) / "audit.jsonl"
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "config-ignored" in events


def test_h2_project_rollback_recipe_is_refused_before_anything_runs(
    tmp_path: Path, publisher: Publisher
) -> None:
    """The demonstrated rollback: a project file turning on frozen mode with
    its own lock, offline, and a committed cache.  Refused as configuration;
    nothing imported, no request made."""
    canary = tmp_path / "canary"
    publisher.write("acme.py", canary_code(canary))
    publisher.publish()
    user_dir = tmp_path / "xdg-user-config" / "secure-import"
    user_dir.mkdir(parents=True)
    (user_dir / "config.toml").write_text(
        f'[repositories.acme]\nurl = "{publisher.url}"\nkeys = ["{publisher.pub_path}"]\n'
        f'ca_bundle = "{publisher.rig.ca_pem_path}"\nmodules = ["acme"]\n'
    )
    project = tmp_path / "proj"
    project.mkdir()
    (project / "secure-import.toml").write_text(
        'cache_dir = "committed-cache"\nfrozen = true\nlock_file = "old.lock"\n'
        '[repositories.acme]\nrefresh = "offline"\n'
    )
    (project / "app.py").write_text("import acme\n")
    result = run_cli(tmp_path, "run", "app.py", cwd=project)
    assert result.returncode != 0
    assert "may only tighten trust" in result.stderr or "lower freshness" in result.stderr
    assert not canary.exists()
    assert publisher.request_paths() == []


def test_h1_group_write_by_the_users_own_private_group_is_not_others(world: World) -> None:
    """User-private groups (umask 002 on Debian/Ubuntu): a 0775 directory
    whose group is the user's own gives nobody else write access."""
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(me.pw_gid)
    if group.gr_name != me.pw_name or any(m != me.pw_name for m in group.gr_mem):
        pytest.skip("the current user has no private group")
    os.chmod(world.project, 0o775)
    os.chown(world.project, -1, me.pw_gid)
    world.write(world.project / "secure-import.toml", "clock_slack = 60\n")
    settings = world.load()
    assert settings.ignored == () and str(world.project / "secure-import.toml") in settings.files
