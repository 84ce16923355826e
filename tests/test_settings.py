"""Configuration files: precedence, strict schema, the tighten-only rule, unsafe_*.

Every test reads explicit user/site files and an explicit environment
(``env={...}``), so the machine's real configuration never leaks in.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import secure_import
from secure_import.errors import ConfigError
from secure_import.hook.finder import get_finder
from secure_import.settings import (
    Overrides,
    UnsafeConfigWarning,
    configure,
    find_project_file,
    load_settings,
)
from secure_import.store.keyfiles import generate_keypair
from secure_import.store.paths import Paths

from .conftest import Publisher


class World:
    """A site file, a user file and a project (with a subdirectory) under tmp."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.site = tmp / "etc" / "config.toml"
        self.user = tmp / "home" / "config.toml"
        self.project = tmp / "proj"
        self.sub = self.project / "src" / "deep"
        for d in (self.site.parent, self.user.parent, self.sub):
            d.mkdir(parents=True, exist_ok=True)
        _, self.pub_a = generate_keypair("a", tmp / "keys")
        _, self.pub_b = generate_keypair("b", tmp / "keys")
        (self.project / "keys").mkdir()
        (self.project / "keys" / "a.pub").write_bytes(self.pub_a.read_bytes())

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(
        self,
        path: Path | None = None,
        *,
        env: dict[str, str] | None = None,
        overrides: Overrides | None = None,
        **kw: Any,
    ) -> secure_import.settings.Settings:
        return load_settings(
            path,
            cwd=self.sub,
            env=env or {},
            user_file=self.user,
            site_file=self.site,
            overrides=overrides,
            **kw,
        )

    def repo(
        self, name: str, url: str, key: Path, modules: str = '["acme"]', extra: str = ""
    ) -> str:
        return (
            f'[repositories.{name}]\nurl = "{url}"\nkeys = ["{key}"]\n'
            f"modules = {modules}\n{extra}\n"
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# --- discovery and precedence ---------------------------------------------------


def test_project_file_is_found_by_walking_up_from_the_working_directory(world: World) -> None:
    world.write(
        world.project / "pyproject.toml",
        '[project]\nname = "x"\n[tool.secure-import]\nclock_slack = 60\n',
    )
    assert find_project_file(world.sub) == world.project / "pyproject.toml"
    settings = world.load()
    assert settings.clock_slack == timedelta(seconds=60)
    assert settings.origins["clock_slack"].endswith("pyproject.toml [tool.secure-import]")


def test_standalone_file_wins_over_pyproject_in_the_same_directory(world: World) -> None:
    world.write(world.project / "pyproject.toml", "[tool.secure-import]\nclock_slack = 60\n")
    world.write(world.project / "secure-import.toml", "clock_slack = 30\n")
    assert world.load().clock_slack == timedelta(seconds=30)


def test_pyproject_without_the_table_ends_the_walk(world: World) -> None:
    world.write(world.tmp / "secure-import.toml", "clock_slack = 1\n")  # above the project
    world.write(world.project / "pyproject.toml", '[project]\nname = "x"\n')
    settings = world.load()
    assert settings.clock_slack == timedelta(minutes=5)
    assert settings.files == ()


def test_precedence_command_line_env_explicit_project_user_site(world: World) -> None:
    for label, path in (("site", world.site), ("user", world.user)):
        world.write(path, f'cache_dir = "{label}-cache"\nlock_file = "{label}.lock"\n')
    world.write(world.project / "secure-import.toml", "clock_slack = 60\n")
    explicit = world.write(world.tmp / "explicit.toml", 'cache_dir = "explicit-cache"\n')

    s = world.load()
    assert s.cache_dir == world.user.parent / "user-cache"  # a project may not move it
    assert s.clock_slack == timedelta(seconds=60)
    assert s.lock_file == world.user.parent / "user.lock"  # project did not set it
    s = world.load(explicit)
    assert s.cache_dir == world.tmp / "explicit-cache"
    s = world.load(explicit, env={"SECURE_IMPORT_CACHE_DIR": "/env/cache"})
    assert s.cache_dir == Path("/env/cache")
    assert s.origins["cache_dir"] == "$SECURE_IMPORT_CACHE_DIR"
    s = world.load(
        explicit,
        env={"SECURE_IMPORT_CACHE_DIR": "/env/cache"},
        overrides=Overrides(cache_dir=Path("/cli/cache")),
    )
    assert s.cache_dir == Path("/cli/cache")
    assert s.origins["cache_dir"] == "command line"
    assert s.paths.cache_dir == Path("/cli/cache")
    # the files, lowest precedence first
    assert s.files == (
        str(world.site),
        str(world.user),
        str(world.project / "secure-import.toml"),
        str(explicit),
    )


def test_explicit_file_from_the_environment(world: World) -> None:
    explicit = world.write(world.tmp / "svc.toml", "clock_slack = 10\n")
    s = world.load(env={"SECURE_IMPORT_CONFIG": str(explicit), "SECURE_IMPORT_NO_PROJECT": "1"})
    assert s.clock_slack == timedelta(seconds=10)


def test_user_file_overrides_a_site_repository_field_by_name(world: World) -> None:
    world.write(world.site, world.repo("corp", "https://corp.example/repo/", world.pub_a))
    world.write(world.user, '[repositories.corp]\nmodules = ["acme", "tools"]\n')
    (repo,) = world.load().repositories
    assert repo.modules == {"acme", "tools"}
    assert repo.keys == (world.pub_a,)
    assert repo.source == str(world.user)


def test_paths_in_a_file_are_relative_to_that_file(world: World) -> None:
    world.write(
        world.project / "secure-import.toml",
        world.repo(
            "acme", "https://acme.example/", Path("keys/a.pub"), extra='ca_bundle = "certs/ca.pem"'
        ),
    )
    (repo,) = world.load().repositories
    assert repo.keys == (world.project / "keys" / "a.pub",)
    assert repo.ca_bundle == world.project / "certs" / "ca.pem"


# --- strict schema ------------------------------------------------------------------


def test_unknown_top_level_key_is_refused_naming_file_and_key(world: World) -> None:
    path = world.write(world.tmp / "x.toml", "cache_dri = 'c'\n")
    with pytest.raises(ConfigError) as info:
        world.load(path)
    assert str(path) in str(info.value) and "cache_dri" in str(info.value)
    assert "cache_dir" in str(info.value)  # the suggestion


def test_unknown_repository_key_is_refused(world: World) -> None:
    path = world.write(
        world.tmp / "x.toml",
        world.repo("acme", "https://acme.example/", world.pub_a, extra="verify = false"),
    )
    with pytest.raises(ConfigError, match=r"repositories\.acme\.verify: unknown key"):
        world.load(path)


@pytest.mark.parametrize(
    "text,key",
    [
        ("clock_slack = 'soon'", "clock_slack"),
        ("frozen = 1", "frozen"),
        ("clock_slack = 7200", "clock_slack"),
        ("[repositories.a]\nurl = 'https://a.example/'\nkeys = []\nmodules=['a']", "keys"),
        ("[repositories.a]\nurl = 'https://a.example/'\nkeys = ['k']\nthreshold = 0", "threshold"),
        ("[repositories.a]\nurl = 'https://a.example/'\nkeys = ['k']\nmodules = ['os']", "modules"),
        (
            "[repositories.a]\nurl = 'https://a.example/'\nkeys = ['k']\nrefresh = 'never'",
            "refresh",
        ),
    ],
)
def test_wrong_types_and_values_are_refused(world: World, text: str, key: str) -> None:
    path = world.write(world.tmp / "x.toml", text + "\n")
    with pytest.raises(ConfigError, match=key):
        world.load(path)


def test_invalid_toml_names_the_file(world: World) -> None:
    path = world.write(world.tmp / "x.toml", "clock_slack = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        world.load(path)


def test_http_repository_is_refused_in_any_file(world: World) -> None:
    path = world.write(world.user, world.repo("a", "http://a.example/", world.pub_a))
    with pytest.raises(ConfigError, match=r"repositories\.a\.url: only https"):
        world.load()
    assert path.exists()


def test_modules_are_required_unless_unsafe_all_modules(world: World) -> None:
    world.write(
        world.user, f'[repositories.a]\nurl = "https://a.example/"\nkeys = ["{world.pub_a}"]\n'
    )
    with pytest.raises(ConfigError, match="unsafe_all_modules"):
        world.load()


def test_threshold_above_the_number_of_keys_is_refused(world: World) -> None:
    world.write(
        world.user, world.repo("a", "https://a.example/", world.pub_a, extra="threshold = 2")
    )
    with pytest.raises(ConfigError, match="threshold"):
        world.load()


def test_world_writable_configuration_file_is_refused(world: World) -> None:
    path = world.write(world.tmp / "x.toml", "clock_slack = 1\n")
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        world.load(path)


def test_bad_boolean_in_the_environment_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="SECURE_IMPORT_FROZEN"):
        world.load(env={"SECURE_IMPORT_FROZEN": "maybe"})


def test_same_url_twice_is_refused(world: World) -> None:
    world.write(
        world.user,
        world.repo("a", "https://a.example/", world.pub_a)
        + world.repo("b", "https://a.example", world.pub_a, modules='["b"]'),
    )
    with pytest.raises(ConfigError, match="configured twice"):
        world.load()


# --- the tighten-only rule --------------------------------------------------------


def _project(world: World, text: str) -> Path:
    return world.write(world.project / "secure-import.toml", text)


def test_project_may_add_a_repository_with_pins(world: World) -> None:
    _project(world, world.repo("acme", "https://acme.example/", Path("keys/a.pub")))
    (repo,) = world.load().repositories
    assert repo.url == "https://acme.example/" and repo.modules == {"acme"}


def test_project_may_narrow_modules_raise_threshold_and_go_offline(world: World) -> None:
    """Offline only because the user's file allows the project to lower
    freshness (the rule table in docs/operations.md, test_settings_rules.py)."""
    world.write(
        world.user,
        "allow_project_freshness = true\n"
        + world.repo("corp", "https://corp.example/", world.pub_a, modules='["acme", "tools"]'),
    )
    _project(
        world,
        '[repositories.corp]\nmodules = ["acme"]\nrefresh = "offline"\nkeys = ["keys/a.pub"]\n',
    )
    (repo,) = world.load().repositories
    assert repo.modules == {"acme"} and repo.offline


@pytest.mark.parametrize(
    "text,needle",
    [
        ('[repositories.corp]\nmodules = ["acme", "evil"]\n', "may not allow more modules"),
        ("[repositories.corp]\nthreshold = 1\n", None),  # equal: fine
        ('[repositories.corp]\nurl = "https://evil.example/"\n', "may not change"),
        ('[repositories.corp]\nca_bundle = "evil-ca.pem"\n', "may not change"),
        ('[repositories.corp]\nauth = { env = "HOME" }\n', "credentials"),
        ("[repositories.corp]\nunsafe_all_modules = true\n", "unsafe_"),
        ("unsafe_clock_slack = 86400\n", "unsafe_"),
        ('state_dir = "fresh-state"\n', "trust state"),
        ('log_dir = "elsewhere"\n', "audit log"),
        ("clock_slack = 1800\n", "only lower the clock slack"),
        (
            '[repositories.evil]\nurl = "https://evil.example/"\nkeys = ["keys/a.pub"]\n'
            'modules = ["acme"]\n',
            "already served by repositories.corp",
        ),
        (
            '[repositories.other]\nurl = "https://corp.example/"\nkeys = ["keys/a.pub"]\n'
            'modules = ["zzz"]\n',
            "already configured as repositories.corp",
        ),
        (
            '[repositories.evil]\nurl = "https://evil.example/"\nkeys = ["keys/a.pub"]\n'
            "unsafe_all_modules = true\n",
            "unsafe_",
        ),
    ],
)
def test_project_may_not_widen_trust(world: World, text: str, needle: str | None) -> None:
    world.write(
        world.user,
        world.repo("corp", "https://corp.example/", world.pub_a, modules='["acme", "tools"]'),
    )
    _project(world, text)
    if needle is None:
        world.load()
        return
    with pytest.raises(ConfigError, match=needle) as info:
        world.load()
    assert "secure-import.toml" in str(info.value)


def test_project_may_not_lower_a_threshold(world: World) -> None:
    world.write(
        world.user,
        f'[repositories.corp]\nurl = "https://corp.example/"\n'
        f'keys = ["{world.pub_a}", "{world.pub_b}"]\nthreshold = 2\nmodules = ["acme"]\n',
    )
    _project(world, "[repositories.corp]\nthreshold = 1\n")
    with pytest.raises(ConfigError, match="may not lower the threshold"):
        world.load()


def test_project_may_not_change_the_pinned_keys(world: World) -> None:
    world.write(world.user, world.repo("corp", "https://corp.example/", world.pub_a))
    _project(world, f'[repositories.corp]\nkeys = ["{world.pub_b}"]\n')
    with pytest.raises(ConfigError, match="may not change the keys"):
        world.load()


def test_project_may_not_leave_frozen_mode(world: World) -> None:
    world.write(world.user, 'frozen = true\nlock_file = "u.lock"\n')
    _project(world, "frozen = false\n")
    with pytest.raises(ConfigError, match="may not leave frozen mode"):
        world.load()


def test_the_same_widening_is_allowed_in_an_explicit_file(world: World) -> None:
    world.write(world.user, world.repo("corp", "https://corp.example/", world.pub_a))
    explicit = world.write(
        world.tmp / "ops.toml", '[repositories.corp]\nmodules = ["acme", "tools"]\n'
    )
    (repo,) = world.load(explicit).repositories
    assert repo.modules == {"acme", "tools"}


# --- unsafe_* ------------------------------------------------------------------------


def test_unsafe_setting_warns_every_time_it_is_loaded(world: World) -> None:
    world.write(world.user, "unsafe_clock_slack = 86400\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # the interpreter's defaults: "default" action
        world.load()
        world.load()
    unsafe = [w for w in caught if issubclass(w.category, UnsafeConfigWarning)]
    assert len(unsafe) == 2
    assert "unsafe_clock_slack" in str(unsafe[0].message)
    assert world.load(warn=False).clock_slack == timedelta(days=1)


def test_unsafe_setting_is_refused_in_frozen_mode(world: World) -> None:
    world.write(
        world.user,
        world.repo("a", "https://a.example/", world.pub_a, modules="[]").replace(
            "modules = []", "unsafe_all_modules = true"
        ),
    )
    with pytest.raises(ConfigError, match="frozen mode refuses unsafe settings"):
        world.load(env={"SECURE_IMPORT_FROZEN": "1", "SECURE_IMPORT_LOCK_FILE": "x.lock"})


def test_frozen_mode_needs_a_lock_file(world: World) -> None:
    with pytest.raises(ConfigError, match="lock file"):
        world.load(overrides=Overrides(frozen=True))


# --- directories (config.py) ----------------------------------------------------------


def test_systemd_directories_are_used_below_secure_import_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("CACHE", "STATE", "LOG"):
        monkeypatch.delenv(f"SECURE_IMPORT_{name}_DIR", raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/svc-cache:{tmp_path}/other")
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/svc-state")
    monkeypatch.setenv("LOGS_DIRECTORY", f"{tmp_path}/svc-logs")
    paths = Paths.default()
    assert paths.cache_dir == tmp_path / "svc-cache" / "secure-import"
    assert paths.state_dir == tmp_path / "svc-state" / "secure-import"
    assert paths.log_dir == tmp_path / "svc-logs" / "secure-import"
    monkeypatch.setenv("SECURE_IMPORT_STATE_DIR", str(tmp_path / "mine"))
    assert Paths.default().state_dir == tmp_path / "mine"
    assert Paths.default(state_dir=tmp_path / "arg").state_dir == tmp_path / "arg"


def test_site_mode_uses_platformdirs_site_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CACHE", "STATE", "LOG"):
        monkeypatch.delenv(f"SECURE_IMPORT_{name}_DIR", raising=False)
    for name in ("CACHE_DIRECTORY", "STATE_DIRECTORY", "LOGS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECURE_IMPORT_SITE", "1")
    assert Paths.default() == Paths.site()
    assert Paths.default(site=False) != Paths.site()


def test_site_directories_get_the_same_permission_checks(tmp_path: Path) -> None:
    from secure_import.errors import UnsafePermissionsError
    from secure_import.store.cache import Cache

    shared = tmp_path / "var-cache"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafePermissionsError, match="writable by group or others"):
        Cache(shared).put(hashlib.sha256(b"x").hexdigest(), b"x")


# --- configure() ---------------------------------------------------------------------


def test_configure_installs_the_finder_from_a_file(
    publisher: Publisher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher.write("configured_pkg/__init__.py", "VALUE = 41 + 1\n")
    publisher.publish()
    monkeypatch.setenv("SECURE_IMPORT_NO_PROJECT", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-site"))
    config = tmp_path / "app" / "secure-import.toml"
    config.parent.mkdir()
    config.write_text(
        f'[repositories.pub]\nurl = "{publisher.url}"\nkeys = ["{publisher.pub_path}"]\n'
        f'modules = ["configured_pkg"]\nca_bundle = "{publisher.rig.ca_pem_path}"\n'
    )
    repos = configure(config)
    assert [r.url for r in repos] == [publisher.url]
    assert list(get_finder().repositories) == repos
    module = importlib.import_module("configured_pkg")
    assert module.VALUE == 42
    again = configure(config)  # replaces, does not duplicate
    assert list(get_finder().repositories) == again
    sys.modules.pop("configured_pkg", None)
    log = Paths.default().audit_log.read_text()
    assert '"module":"configured_pkg"' in log


# --- materialise mode (issue 18) -------------------------------------------------


@pytest.mark.parametrize(
    "value,expected",
    [("true", True), ("false", False), ('["acme"]', frozenset({"acme"}))],
)
def test_materialise_is_read_from_a_repository_table_and_reaches_the_repository(
    world: World, value: str, expected: object
) -> None:
    world.write(
        world.user,
        world.repo("acme", "https://acme.example/", world.pub_a, extra=f"materialise = {value}"),
    )
    settings = world.load()
    (repo,) = settings.repositories
    assert repo.materialise == expected
    assert settings.as_dict()["repositories"][0]["materialise"] == (  # type: ignore[index]
        sorted(expected) if isinstance(expected, frozenset) else expected
    )
    from secure_import.settings.build import build_repository

    built = build_repository(repo, settings)
    try:
        assert built.materialise == expected
    finally:
        built.close()


@pytest.mark.parametrize("value", ["'not a name'", "1", '["not-a-name"]', "[1]"])
def test_materialise_with_a_bad_value_is_refused_naming_the_key(world: World, value: str) -> None:
    path = world.write(
        world.tmp / "x.toml",
        world.repo("acme", "https://acme.example/", world.pub_a, extra=f"materialise = {value}"),
    )
    with pytest.raises(ConfigError, match="materialise"):
        world.load(path)
