"""Configuration files: repositories and policy from TOML, merged by a documented precedence.

Where settings come from, highest precedence first:

1. the command line (``secure-import --cache-dir ...``, ``run --repo URL --key F``);
2. ``SECURE_IMPORT_*`` environment variables (see :data:`ENVIRONMENT`);
3. an explicit configuration file (``configure(path)``, ``--config``,
   ``$SECURE_IMPORT_CONFIG``);
4. the project file, found by walking up from the working directory: the
   first directory holding ``secure-import.toml`` or ``pyproject.toml`` (with a
   ``[tool.secure-import]`` table) ends the walk;
5. the user file, ``<platformdirs user_config_dir>/config.toml``;
6. the site file, ``<platformdirs site_config_dir>/config.toml``;
7. the defaults in :mod:`secure_import.config`.

Scalars (paths, clock slack, frozen, lock file) take the value of the highest
layer that sets them.  Repositories are tables named by the user
(``[repositories.acme]``); a higher *trusted* layer (explicit, user, site) may
change any field of a repository of the same name.

Invariants:

- the project file may only **tighten** trust, because it arrives with
  whatever code is checked out: it may add repositories with pins and
  restrict existing ones (fewer modules, higher threshold, offline), never set
  an ``unsafe_*`` option, name credentials, move the state or log directory,
  raise the clock slack, leave frozen mode, replace a lock file, or claim a
  module name another repository already serves;
- every file is parsed strictly: an unknown key, a wrong type or an
  ``http://`` URL is a :class:`~secure_import.errors.ConfigError` naming the
  file and the key;
- anything that weakens security is spelled ``unsafe_*``, warns
  (:class:`UnsafeConfigWarning`) every time the settings are loaded, and is
  refused in frozen mode;
- paths in a file are relative to that file's directory (so ``keys/acme.pub``
  next to ``pyproject.toml`` works from any working directory);
- no secret is ever read from a file's text: credentials name an environment
  variable or a file, read only when a repository is built.
"""

from __future__ import annotations

from secure_import.settings.build import build_repositories, build_repository, configure, install
from secure_import.settings.merge import find_project_file, load_settings
from secure_import.settings.model import (
    CONFIG_FILE_NAME,
    ENVIRONMENT,
    MAX_SAFE_CLOCK_SLACK,
    AuthSettings,
    IgnoredConfigWarning,
    Overrides,
    RepositorySettings,
    Settings,
    UnsafeConfigWarning,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENT",
    "MAX_SAFE_CLOCK_SLACK",
    "AuthSettings",
    "IgnoredConfigWarning",
    "Overrides",
    "RepositorySettings",
    "Settings",
    "UnsafeConfigWarning",
    "build_repositories",
    "build_repository",
    "configure",
    "find_project_file",
    "install",
    "load_settings",
]
