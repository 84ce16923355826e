"""Mirrors in configuration files: ``mirrors = [...]``, ``fallback = "..."``, and
what a project file may say about them (THREATS H2, H11).

A request to a mirror tells a third party which names a program imports and
when: a project file (which arrives with checked-out code) may remove mirrors
a trusted layer listed and narrow the failover policy, but may list another
mirror, or widen the policy, only when a trusted layer sets
``allow_project_mirrors = true``.  Keep the rule table in step with
docs/operations.md.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import ConfigError
from secure_import.settings.build import build_repository

from .conftest import Consumer, Publisher, canary_code
from .test_settings import World

M1 = "https://m1.example/copy/"
M2 = "https://m2.example/"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _user(world: World, extra: str = "", repo_extra: str = "") -> None:
    world.write(
        world.user,
        extra
        + world.repo(
            "corp",
            "https://corp.example/",
            world.pub_a,
            modules='["acme", "tools"]',
            extra=repo_extra or f'mirrors = ["{M1}", "{M2}"]',
        ),
    )


def test_mirrors_and_fallback_are_read_and_reach_the_repository(world: World) -> None:
    world.write(
        world.user,
        world.repo(
            "acme",
            "https://acme.example/",
            world.pub_a,
            extra=f'mirrors = ["https://M1.example:443/copy", "{M2}"]\nfallback = "on-not-found"',
        ),
    )
    settings = world.load()
    (repo,) = settings.repositories
    assert repo.mirrors == (M1, M2) and repo.fallback == "on-not-found"
    described = settings.as_dict()["repositories"][0]  # type: ignore[index]
    assert described["mirrors"] == [M1, M2] and described["fallback"] == "on-not-found"
    built = build_repository(repo, settings)
    try:
        assert built.mirrors == (M1, M2) and built.fallback == "on-not-found"
    finally:
        built.close()


def test_failover_after_is_read_and_reaches_the_repositorys_limits(world: World) -> None:
    world.write(
        world.user,
        "failover_after = 1.5\n"
        + world.repo("acme", "https://acme.example/", world.pub_a, extra=f'mirrors = ["{M1}"]'),
    )
    settings = world.load()
    assert settings.limits.failover_after == 1.5
    assert settings.as_dict()["failover_after_seconds"] == 1.5
    built = build_repository(settings.repositories[0], settings)
    try:
        assert built.limits.failover_after == 1.5
    finally:
        built.close()
    path = world.write(world.tmp / "bad.toml", "failover_after = 0\n")
    with pytest.raises(ConfigError, match="failover_after"):
        world.load(path)


def test_the_default_fallback_is_on_error(world: World) -> None:
    world.write(world.user, world.repo("acme", "https://acme.example/", world.pub_a))
    (repo,) = world.load().repositories
    assert repo.mirrors == () and repo.fallback == "on-error"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('mirrors = ["http://m1.example/"]', "mirrors"),
        ('mirrors = "https://m1.example/"', "mirrors"),
        (f'mirrors = ["{M1}", "https://m1.example/copy/"]', "twice"),
        ('mirrors = ["https://acme.example/"]', "mirrors"),
        (
            "mirrors = [" + ", ".join(f'"https://m{i}.example/"' for i in range(6)) + "]",
            "too many",
        ),
        ('fallback = "always"', "fallback"),
        ("fallback = true", "fallback"),
    ],
)
def test_a_bad_mirror_setting_is_refused_naming_the_key(
    world: World, extra: str, needle: str
) -> None:
    path = world.write(
        world.tmp / "x.toml", world.repo("acme", "https://acme.example/", world.pub_a, extra=extra)
    )
    with pytest.raises(ConfigError, match=needle) as caught:
        world.load(path)
    assert "x.toml" in str(caught.value)


# (row id, project file text, accepted without allow_project_mirrors, accepted with it).
RULES = [
    ("mirrors-none", "[repositories.corp]\nmirrors = []\n", True, True),
    ("mirrors-fewer", f'[repositories.corp]\nmirrors = ["{M2}"]\n', True, True),
    ("mirrors-other", '[repositories.corp]\nmirrors = ["https://spy.example/"]\n', False, True),
    ("fallback-narrower", '[repositories.corp]\nfallback = "on-not-found"\n', True, True),
    ("allow_project_mirrors", "allow_project_mirrors = true\n", False, False),
    (
        "new-repository-with-mirror",
        '[repositories.own]\nurl = "https://own.example/"\nkeys = ["keys/a.pub"]\n'
        'modules = ["own"]\nmirrors = ["https://spy.example/"]\n',
        False,
        True,
    ),
    (
        "new-repository-without-mirror",
        '[repositories.own]\nurl = "https://own.example/"\nkeys = ["keys/a.pub"]\n'
        'modules = ["own"]\nfallback = "on-not-found"\n',
        True,
        True,
    ),
]


@pytest.mark.parametrize(
    ("text", "without", "with_allow"),
    [pytest.param(text, a, b, id=row) for row, text, a, b in RULES],
)
def test_project_mirror_rule_table(
    world: World, text: str, without: bool, with_allow: bool
) -> None:
    for allow, expected in ((False, without), (True, with_allow)):
        _user(world, "allow_project_mirrors = true\n" if allow else "")
        world.write(world.project / "secure-import.toml", text)
        if expected:
            settings = world.load()
            assert str(world.project / "secure-import.toml") in settings.files
            assert settings.allow_project_mirrors is allow
        else:
            with pytest.raises(ConfigError) as info:
                world.load()
            assert "secure-import.toml" in str(info.value)


def test_a_project_file_may_not_widen_the_fallback_a_trusted_layer_narrowed(
    world: World,
) -> None:
    _user(world, repo_extra=f'mirrors = ["{M1}"]\nfallback = "on-not-found"')
    world.write(
        world.project / "secure-import.toml", '[repositories.corp]\nfallback = "on-error"\n'
    )
    with pytest.raises(ConfigError, match="narrow the failover"):
        world.load()
    _user(world, "allow_project_mirrors = true\n", f'mirrors = ["{M1}"]\nfallback = "on-not-found"')
    (repo,) = world.load().repositories
    assert repo.fallback == "on-error"


def test_a_project_file_removing_mirrors_leaves_the_repository_without_them(
    world: World,
) -> None:
    _user(world)
    world.write(world.project / "secure-import.toml", "[repositories.corp]\nmirrors = []\n")
    (repo,) = world.load().repositories
    assert repo.mirrors == ()
    assert repo.source.endswith("secure-import.toml")


def test_a_configuration_file_mirror_serves_when_the_origin_is_down(
    tmp_path: Path,
    publisher: Publisher,
    consumer: Consumer,
    canary: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: an explicit configuration file lists a mirror; with the
    origin down, ``configure()`` imports through it, verified and audited."""
    from secure_import.publish.serve import RepoServer

    publisher.write("cfgpkg/__init__.py", "VALUE = 7\n" + canary_code(canary))
    publisher.publish()
    copy = tmp_path / "cfg-mirror"
    shutil.copytree(publisher.out, copy)
    mirror = RepoServer(copy, ssl_context=publisher.rig.server_context())
    mirror.start()
    try:
        config = tmp_path / "explicit.toml"
        config.write_text(
            f'cache_dir = "{consumer.paths.cache_dir}"\n'
            f'state_dir = "{consumer.paths.state_dir}"\n'
            f'log_dir = "{consumer.paths.log_dir}"\n'
            "[repositories.cfg]\n"
            f'url = "{publisher.url}"\n'
            f'keys = ["{publisher.pub_path}"]\n'
            'modules = ["cfgpkg"]\n'
            f'ca_bundle = "{publisher.rig.ca_pem_path}"\n'
            f'mirrors = ["{mirror.url}"]\n'
            'fallback = "on-error"\n'
        )
        config.chmod(0o600)
        monkeypatch.setenv("SECURE_IMPORT_NO_PROJECT", "1")
        for kind in ("CACHE", "STATE", "LOG"):  # the file's directories, not the guard's
            monkeypatch.delenv(f"SECURE_IMPORT_{kind}_DIR")
        publisher.close()
        [repo] = secure_import.configure(config)
        assert repo.mirrors == (mirror.url,)
        assert importlib.import_module("cfgpkg").VALUE == 7 and canary.exists()
        loads = [r for r in consumer.audit() if r["event"] == "load"]
        assert [r["host"] for r in loads] == [f"127.0.0.1:{mirror.port}"]
        consumer.assert_cache_verified()
    finally:
        mirror.stop()
