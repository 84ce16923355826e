"""Materialise mode: verified packages on disk, so code that opens files next to
``__file__`` works; the copy is re-verified, repaired when tampered, never run."""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import stat
import sys
from pathlib import Path

import pytest

import secure_import
from secure_import.errors import NotListedError, UnsafePermissionsError
from secure_import.hook.finder import RemoteLoader
from secure_import.store.cache import Cache
from secure_import.store.materialise import FILE_MODE, PACKAGE_DIR_MODE

from .conftest import Consumer, Publisher, canary_code

TEMPLATE = "Hello, {name}!\n"

#: A package that reads a template next to ``__file__`` at import time (the
#: habit of template engines), and lists its own language directory.
TPL_INIT = """
import os
_here = os.path.dirname(__file__)
with open(os.path.join(_here, "templates", "page.txt"), encoding="utf-8") as _f:
    PAGE = _f.read()
LANGUAGES = sorted(n[:-4] for n in os.listdir(os.path.join(_here, "lang")) if n.endswith(".txt"))

def render(name):
    return PAGE.format(name=name)

def word(lang):
    with open(os.path.join(_here, "lang", lang + ".txt"), encoding="utf-8") as f:
        return f.read().strip()
"""


def publish_tpl(publisher: Publisher) -> None:
    publisher.write("tplpkg/__init__.py", TPL_INIT)
    publisher.write("tplpkg/templates/page.txt", TEMPLATE)
    publisher.write("tplpkg/lang/en.txt", "hello\n")
    publisher.write("tplpkg/lang/fr.txt", "bonjour\n")
    publisher.write("tplpkg/lang/de.txt", "hallo\n")
    publisher.write("tplpkg/sub/__init__.py", "from tplpkg import render\nVALUE = render('sub')\n")
    publisher.write("tplpkg/sub/tool.py", "import os\nHERE = os.path.dirname(__file__)\n")
    publisher.write("plain.py", "import os\nHERE = __file__\n")
    publisher.publish()


def _tree(consumer: Consumer) -> Path:
    base = consumer.paths.cache_dir / "materialised"
    (repo_dir,) = base.iterdir()
    (digest_dir,) = repo_dir.iterdir()
    return digest_dir


def _events(consumer: Consumer, event: str) -> list[dict[str, object]]:
    return [r for r in consumer.audit() if r["event"] == event]


def test_package_reads_a_template_next_to_file_at_import_time(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_tpl(publisher)
    repo = consumer.add(materialise=True)
    import tplpkg  # type: ignore[import-not-found]

    tree = _tree(consumer)
    assert tplpkg.render("Ada") == "Hello, Ada!\n"
    assert tplpkg.__file__ == str(tree / "tplpkg" / "__init__.py")
    assert tplpkg.__spec__.origin == tplpkg.__file__
    assert list(tplpkg.__path__) == [str(tree / "tplpkg")]
    assert os.path.isfile(tplpkg.__file__)
    # The code ran from verified bytes through our loader, audited as a load
    # of the https URL it was signed under.
    assert isinstance(tplpkg.__loader__, RemoteLoader)
    loads = [r for r in _events(consumer, "load") if r["module"] == "tplpkg"]
    assert [r["url"] for r in loads] == [repo.url + "tplpkg/__init__.py"]
    # Written once, audited once, with the manifest digest it is keyed by.
    (written,) = _events(consumer, "materialise")
    assert written["outcome"] == "ok" and written["module"] == "tplpkg"
    assert "verified files written to" in str(written["message"])
    assert tree.name == str(written["sha256"])[:32]
    # Read-only files, read-only package directories, private parents.
    for path in (tree / "tplpkg").rglob("*"):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        assert mode == (PACKAGE_DIR_MODE if path.is_dir() else FILE_MODE), path
    assert stat.S_IMODE(os.lstat(tree).st_mode) == 0o700
    # Exactly the signed files of the package, nothing else.
    on_disk = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    signed = sorted(p for p in publisher.signed_files() if p.startswith("tplpkg/"))
    assert on_disk == signed


def test_package_lists_its_own_data_directory_and_submodules(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_tpl(publisher)
    consumer.add(materialise=True)
    import tplpkg
    import tplpkg.sub  # type: ignore[import-not-found]
    import tplpkg.sub.tool  # type: ignore[import-not-found]

    assert tplpkg.LANGUAGES == ["de", "en", "fr"]
    assert tplpkg.word("fr") == "bonjour"
    assert tplpkg.sub.VALUE == "Hello, sub!\n"
    assert tplpkg.sub.tool.HERE == os.path.join(os.path.dirname(tplpkg.__file__), "sub")
    # Submodules are found through our path-entry finder for the real
    # directory, listed from the signed manifest.
    names = sorted(m.name for m in pkgutil.iter_modules(tplpkg.__path__))
    assert names == ["sub"]
    assert isinstance(tplpkg.sub.tool.__loader__, RemoteLoader)
    # pkgutil.get_data with the real path: verified bytes.
    assert pkgutil.get_data("tplpkg", "templates/page.txt") == TEMPLATE.encode()


def test_default_mode_stays_urls_and_per_package_mode_is_scoped(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_tpl(publisher)
    repo = consumer.add(materialise=["tplpkg"])
    import plain  # type: ignore[import-not-found]
    import tplpkg

    assert plain.HERE == repo.url + "plain.py"
    assert os.path.isfile(tplpkg.__file__)
    assert not (_tree(consumer) / "plain.py").exists()
    secure_import.remove_repo(repo)
    for name in [n for n in sys.modules if n.partition(".")[0] in ("plain", "tplpkg")]:
        del sys.modules[name]
    consumer.add()
    # URL mode (the default): the habit breaks exactly as the issue describes.
    with pytest.raises(FileNotFoundError, match="https:"):
        import tplpkg


def _fresh(consumer: Consumer) -> None:
    consumer.new_process(materialise=True)
    for name in [n for n in sys.modules if n.partition(".")[0] == "tplpkg"]:
        del sys.modules[name]


def _edit(path: Path, data: bytes) -> None:
    os.chmod(path.parent, 0o700)
    os.chmod(path, 0o600)
    path.write_bytes(data)
    os.chmod(path, FILE_MODE)
    os.chmod(path.parent, PACKAGE_DIR_MODE)


@pytest.mark.parametrize(
    "attack",
    ["edited-template", "edited-mode-bits-kept", "planted-module", "symlinked-file", "deleted"],
)
def test_l1_tampered_materialised_file_is_detected_and_replaced_never_used(
    publisher: Publisher, consumer: Consumer, canary: Path, tmp_path: Path, attack: str
) -> None:
    """THREATS L1/L4/L5 for materialised trees: whatever was done to the copy on
    disk, the next process replaces it from verified bytes and audits why."""
    publish_tpl(publisher)
    consumer.add(materialise=True)
    import tplpkg

    page = Path(tplpkg.__file__).parent / "templates" / "page.txt"
    pkg_dir = page.parent.parent
    if attack == "edited-template":
        _edit(page, b"Owned, {name}!\n")
    elif attack == "edited-mode-bits-kept":
        # Same length, mode and owner: only the hash can tell.
        _edit(page, TEMPLATE.replace("Hello", "Hellx").encode())
    elif attack == "planted-module":
        os.chmod(pkg_dir, 0o700)
        (pkg_dir / "evil.py").write_text(canary_code(canary))
        os.chmod(pkg_dir, PACKAGE_DIR_MODE)
    elif attack == "symlinked-file":
        outside = tmp_path / "outside.txt"
        outside.write_text("Owned, {name}!\n")
        os.chmod(page.parent, 0o700)
        page.unlink()
        page.symlink_to(outside)
        os.chmod(page.parent, PACKAGE_DIR_MODE)
    else:
        os.chmod(page.parent, 0o700)
        page.unlink()
        os.chmod(page.parent, PACKAGE_DIR_MODE)
    _fresh(consumer)
    import tplpkg as again

    assert again.render("Ada") == "Hello, Ada!\n"
    assert page.read_bytes() == TEMPLATE.encode() and not page.is_symlink()
    assert not (pkg_dir / "evil.py").exists()
    with pytest.raises(NotListedError):
        importlib.import_module("tplpkg.evil")
    assert not canary.exists()
    replaced = [r for r in _events(consumer, "materialise") if r["outcome"] == "replaced"]
    assert len(replaced) == 1
    assert replaced[0]["code"] == "materialised-tampered"
    expected = {
        "edited-template": "templates/page.txt",
        "edited-mode-bits-kept": "sha256",
        "planted-module": "tplpkg/evil.py: not a signed file",
        "symlinked-file": "templates/page.txt",
        "deleted": "templates/page.txt: missing",
    }[attack]
    assert expected in str(replaced[0]["message"])
    if attack == "symlinked-file":
        assert (tmp_path / "outside.txt").read_text() == "Owned, {name}!\n"  # not written through
    consumer.assert_cache_verified()


def test_l5_code_runs_from_verified_bytes_not_from_the_materialised_file(
    publisher: Publisher, consumer: Consumer, canary: Path
) -> None:
    """A module file edited on disk after this process checked the tree: the
    import still executes the verified bytes (the edit is only ever seen by
    code that opens the file itself)."""
    publish_tpl(publisher)
    consumer.add(materialise=True)
    import tplpkg

    tool = Path(tplpkg.__file__).parent / "sub" / "tool.py"
    _edit(tool, canary_code(canary).encode())
    import tplpkg.sub.tool

    assert not canary.exists()
    assert tplpkg.sub.tool.HERE == str(tool.parent)
    expected = hashlib.sha256(b"import os\nHERE = os.path.dirname(__file__)\n").hexdigest()
    loads = [r for r in _events(consumer, "load") if r["module"] == "tplpkg.sub.tool"]
    assert [r["sha256"] for r in loads] == [expected]


def test_l3_materialised_directory_writable_by_others_is_refused_and_audited(
    publisher: Publisher, consumer: Consumer, canary: Path
) -> None:
    publisher.write("tplpkg/__init__.py", canary_code(canary))
    publisher.publish()
    consumer.add(materialise=True)
    base = consumer.paths.cache_dir / "materialised"
    consumer.paths.cache_dir.mkdir(mode=0o700, parents=True)
    base.mkdir(mode=0o700)
    os.chmod(base, 0o777)
    with pytest.raises(UnsafePermissionsError) as info:
        import tplpkg  # noqa: F401
    assert info.value.name == "tplpkg"
    assert not canary.exists()
    assert list(base.iterdir()) == []
    (refusal,) = consumer.refusals()
    assert refusal["code"] == "unsafe-permissions" and refusal["module"] == "tplpkg"


def test_second_process_verifies_without_rewriting_and_cache_clear_removes_trees(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_tpl(publisher)
    consumer.add(materialise=True)
    import tplpkg

    before = os.lstat(tplpkg.__file__)
    _fresh(consumer)
    import tplpkg as again

    after = os.lstat(again.__file__)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert [r["outcome"] for r in _events(consumer, "materialise")] == ["ok"]
    report = Cache(consumer.paths.cache_dir).clear_report()
    assert str(consumer.paths.cache_dir / "materialised") in report.removed, report
    assert not (consumer.paths.cache_dir / "materialised").exists()


def test_new_release_gets_a_new_tree_keyed_by_its_manifest(
    publisher: Publisher, consumer: Consumer
) -> None:
    publish_tpl(publisher)
    consumer.add(materialise=True)
    import tplpkg

    first = Path(tplpkg.__file__).parent.parent
    publisher.write("tplpkg/templates/page.txt", "Hi, {name}.\n")
    publisher.publish()
    _fresh(consumer)
    import tplpkg as again

    second = Path(again.__file__).parent.parent
    assert again.render("Ada") == "Hi, Ada.\n"
    assert first != second and first.parent == second.parent
    # The old release's files stay for processes still running it (pruned later).
    assert (first / "tplpkg" / "templates" / "page.txt").read_text() == TEMPLATE
