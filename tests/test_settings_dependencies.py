"""Configuration of dependency policy: ``trust_dependencies`` and
``unsafe_undeclared_imports`` per repository, parsed strictly, widening only
from trusted layers (H2: a project file may only tighten), unsafe settings
refused in frozen mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_import.errors import ConfigError
from secure_import.settings import build_repositories

from .test_settings import World, _project


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.mark.parametrize(
    ("value", "level"),
    [("true", "direct"), ("false", "no"), ('"transitive"', "transitive")],
)
def test_trust_dependencies_levels(world: World, value: str, level: str) -> None:
    world.write(
        world.user,
        world.repo(
            "corp", "https://corp.example/", world.pub_a, extra=f"trust_dependencies = {value}"
        ),
    )
    settings = world.load()
    (repo,) = settings.repositories
    assert repo.trust_dependencies == level
    assert settings.as_dict()["repositories"][0]["trust_dependencies"] == level  # type: ignore[index]
    (built,) = build_repositories(settings)
    assert built.trust_dependencies == level


@pytest.mark.parametrize("value", ['"all"', "1", '["x"]'])
def test_trust_dependencies_bad_values_are_refused(world: World, value: str) -> None:
    world.write(
        world.user,
        world.repo(
            "corp", "https://corp.example/", world.pub_a, extra=f"trust_dependencies = {value}"
        ),
    )
    with pytest.raises(ConfigError, match="trust_dependencies"):
        world.load()


def test_a_project_file_may_not_turn_on_following_declarations(world: World) -> None:
    """Following declarations widens trust: the checked-out project may not
    do it, neither for a trusted repository nor for one it adds."""
    world.write(world.user, world.repo("corp", "https://corp.example/", world.pub_a))
    _project(world, "[repositories.corp]\ntrust_dependencies = true\n")
    with pytest.raises(ConfigError, match="widens trust"):
        world.load()
    _project(
        world,
        '[repositories.new]\nurl = "https://new.example/"\nkeys = ["keys/a.pub"]\n'
        'modules = ["newmod"]\ntrust_dependencies = "transitive"\n',
    )
    with pytest.raises(ConfigError, match="widens trust"):
        world.load()


def test_a_project_file_may_narrow_following(world: World) -> None:
    world.write(
        world.user,
        world.repo(
            "corp", "https://corp.example/", world.pub_a, extra='trust_dependencies = "transitive"'
        ),
    )
    _project(world, "[repositories.corp]\ntrust_dependencies = true\n")
    assert world.load().repositories[0].trust_dependencies == "direct"
    _project(world, "[repositories.corp]\ntrust_dependencies = false\n")
    assert world.load().repositories[0].trust_dependencies == "no"


def test_unsafe_undeclared_imports_warns_is_refused_in_projects_and_frozen_mode(
    world: World,
) -> None:
    world.write(
        world.user,
        world.repo(
            "corp", "https://corp.example/", world.pub_a, extra="unsafe_undeclared_imports = true"
        ),
    )
    with pytest.warns(UserWarning, match="unsafe_undeclared_imports"):
        settings = world.load()
    assert settings.repositories[0].unsafe_undeclared_imports
    with pytest.raises(ConfigError, match="frozen mode refuses unsafe settings"):
        world.load(env={"SECURE_IMPORT_FROZEN": "1", "SECURE_IMPORT_LOCK_FILE": "x.lock"})
    world.write(world.user, world.repo("corp", "https://corp.example/", world.pub_a))
    _project(world, "[repositories.corp]\nunsafe_undeclared_imports = true\n")
    with pytest.raises(ConfigError, match="unsafe_"):
        world.load()
