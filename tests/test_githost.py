"""Git-hosting URL helpers: exact URLs, strict refusal of anything odd."""

from __future__ import annotations

import pytest

from secure_import.errors import ConfigError
from secure_import.publish.githost import github_url, gitlab_url
from secure_import.verify.names import parse_origin

SHA = "3f2c9e1d0b7a65544332211000ffeeddccbbaa99"


def test_github_url_for_a_commit_and_folder() -> None:
    url = github_url("alice", "tools", SHA, "site/repo")
    assert url == f"https://raw.githubusercontent.com/alice/tools/{SHA}/site/repo/"
    origin, base = parse_origin(url)
    assert origin.host == "raw.githubusercontent.com" and base.endswith("/site/repo/")


def test_github_url_at_the_root_and_with_a_branch_ref() -> None:
    assert github_url("a-b", "c.d", "release/1.2") == (
        "https://raw.githubusercontent.com/a-b/c.d/release/1.2/"
    )


def test_gitlab_url_with_nested_group_and_self_managed_host() -> None:
    assert gitlab_url("group/sub", "proj", "v1.0", "dist") == (
        "https://gitlab.com/group/sub/proj/-/raw/v1.0/dist/"
    )
    assert gitlab_url("g", "p", SHA, host="git.example.org") == (
        f"https://git.example.org/g/p/-/raw/{SHA}/"
    )


@pytest.mark.parametrize(
    "owner",
    ["", "a/b", "..", "a..b", "evil@host", "a b", "a\tb", "a%2fb", "a\\b", ".hidden", "-x", "ä"],
)
def test_bad_owner_or_repo_is_refused(owner: str) -> None:
    with pytest.raises(ConfigError):
        github_url(owner, "repo", SHA)
    with pytest.raises(ConfigError):
        github_url("owner", owner, SHA)


@pytest.mark.parametrize("ref", ["", "..", "a/../b", "a//b", "/abs", "a b", "a@{1}", "x%2e"])
def test_bad_ref_is_refused(ref: str) -> None:
    with pytest.raises(ConfigError):
        github_url("o", "r", ref)
    with pytest.raises(ConfigError):
        gitlab_url("o", "r", ref)


@pytest.mark.parametrize("path", ["..", "a/../b", "a/./b", "a b", "a?x", "a#b"])
def test_bad_path_is_refused(path: str) -> None:
    with pytest.raises(ConfigError):
        github_url("o", "r", SHA, path)


@pytest.mark.parametrize(
    "host", ["evil.com:444", "user@gitlab.com", "GITLAB.COM", "localhost", "gitlab.com/x"]
)
def test_bad_gitlab_host_is_refused(host: str) -> None:
    with pytest.raises(ConfigError):
        gitlab_url("o", "r", SHA, host=host)


def test_group_path_may_not_climb() -> None:
    for owner in ["a/..", "../a", "a//b", "a/"]:
        with pytest.raises(ConfigError):
            gitlab_url(owner, "r", SHA)
