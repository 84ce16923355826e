"""Unit tests for secure_import.verify.manifest: schema (P5, P7) and paths (F4-F7)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_import.errors import FormatError, UnsafePathError
from secure_import.verify import envelope, manifest
from secure_import.verify.keys import public_key_of
from secure_import.verify.manifest import FileEntry

ISSUED = datetime(2026, 11, 20, 23, 0, 0, tzinfo=UTC)
EXPIRES = datetime(2027, 2, 18, 23, 0, 0, tzinfo=UTC)
URL = "https://repo.example/secure-import-manifest.json"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_dict(paths: list[str]) -> dict[str, dict[str, object]]:
    return {path: {"sha256": digest(path.encode()), "length": len(path)} for path in paths}


BASE_FILES = [
    "mod.py",
    "pkg/__init__.py",
    "pkg/sub.py",
    "pkg/inner/__init__.py",
    "pkg/inner/deep.py",
    "pkg/data/table.csv",
    "pkg/py.typed",
    "pkg-1.0.dist-info/METADATA",
    "pkg-1.0.dist-info/licenses/LICENSE",
]


def make_doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "_type": "secure-import/manifest",
        "spec_version": 1,
        "version": 3,
        "root_version": 1,
        "issued": "2026-11-20T23:00:00Z",
        "expires": "2027-02-18T23:00:00Z",
        "provides": ["mod", "pkg"],
        "files": file_dict(BASE_FILES),
    }
    doc.update(overrides)
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def parse_doc(doc: object) -> manifest.Manifest:
    return manifest.parse(encode(doc), url=URL)


def with_files(paths: list[str], provides: list[str] | None = None) -> dict[str, object]:
    return make_doc(files=file_dict(paths), provides=provides or ["pkg"])


def format_refused(doc: object) -> FormatError:
    with pytest.raises(FormatError) as info:
        parse_doc(doc)
    assert not isinstance(info.value, UnsafePathError)
    assert info.value.url == URL
    return info.value


def path_refused(paths: list[str], provides: list[str] | None = None) -> UnsafePathError:
    with pytest.raises(UnsafePathError) as info:
        parse_doc(with_files(paths, provides))
    assert info.value.url == URL
    return info.value


# --- accepted manifests and the model ------------------------------------------------------------


def test_valid_manifest_is_parsed() -> None:
    m = parse_doc(make_doc())
    assert m.version == 3 and m.root_version == 1
    assert m.issued == ISSUED and m.expires == EXPIRES
    assert m.issued.tzinfo is UTC
    assert m.provides == ("mod", "pkg")
    entry = m.files["pkg/sub.py"]
    assert entry == FileEntry("pkg/sub.py", digest(b"pkg/sub.py"), len("pkg/sub.py"))


def test_manifest_files_cannot_be_mutated() -> None:
    m = parse_doc(make_doc())
    with pytest.raises(TypeError):
        m.files["evil.py"] = FileEntry("evil.py", "0" * 64, 0)  # type: ignore[index]


def test_manifest_is_hashable_and_comparable() -> None:
    assert parse_doc(make_doc()) == parse_doc(make_doc())
    assert hash(parse_doc(make_doc())) == hash(parse_doc(make_doc()))


def test_a_memo_round_trip_gives_an_equal_manifest_with_the_same_entries() -> None:
    """``from_plain`` builds entries lazily (:class:`FileTable`); every way
    of reading them must give what the parsed manifest gives."""
    parsed = parse_doc(make_doc())
    loaded = manifest.from_plain(manifest.to_plain(parsed))
    assert isinstance(loaded.files, manifest.FileTable)
    assert loaded == parsed
    assert list(loaded.files) == list(parsed.files)  # sorted path order kept
    assert len(loaded.files) == len(parsed.files)
    for path, entry in parsed.files.items():
        assert path in loaded.files
        assert loaded.files[path] == entry and type(loaded.files[path]) is FileEntry
        assert loaded.files.get(path) is loaded.files[path]  # built once
    assert list(loaded.files.values()) == list(parsed.files.values())
    assert loaded.find_module("pkg.sub") == parsed.find_module("pkg.sub")
    assert loaded.files.get("absent.py") is None
    assert "absent.py" not in loaded.files
    with pytest.raises(KeyError):
        loaded.files["absent.py"]
    with pytest.raises(TypeError):
        loaded.files["evil.py"] = FileEntry("evil.py", "0" * 64, 0)  # type: ignore[index]


def test_memo_columns_that_do_not_line_up_are_refused() -> None:
    plain = manifest.to_plain(parse_doc(make_doc()))
    version, root_version, issued, expires, provides, (paths, digests, lengths), req, bun = plain
    with pytest.raises(ValueError):
        manifest.from_plain(
            (
                version,
                root_version,
                issued,
                expires,
                provides,
                (paths, digests[:-1], lengths),
                req,
                bun,
            )
        )
    with pytest.raises(ValueError):
        manifest.FileTable({"a.py": "0" * 64}, {"b.py": 1})


def test_find_module_distinguishes_packages_and_modules() -> None:
    m = parse_doc(make_doc())
    found = m.find_module("pkg")
    assert found is not None and found[1] is True and found[0].path == "pkg/__init__.py"
    found = m.find_module("pkg.sub")
    assert found is not None and found[1] is False and found[0].path == "pkg/sub.py"
    found = m.find_module("pkg.inner.deep")
    assert found is not None and found[0].path == "pkg/inner/deep.py"
    assert m.is_package("pkg.inner") and not m.is_package("pkg.sub")
    assert not m.is_package("nothing")


@pytest.mark.parametrize(
    "name", ["pkg.evil", "pkg.data", "pkg..sub", "pkg/sub", "pkg.sub.py", "", "pkg.__init__", "x"]
)
def test_find_module_for_unlisted_or_odd_names_is_none(name: str) -> None:
    assert parse_doc(make_doc()).find_module(name) is None


def test_children_lists_direct_submodules_sorted() -> None:
    m = parse_doc(make_doc())
    assert m.children("pkg") == [("inner", True), ("sub", False)]
    assert m.children("pkg.inner") == [("deep", False)]
    assert m.children("") == [("mod", False), ("pkg", True)]
    assert m.children("pkg.sub") == []
    assert m.children("missing") == []


def test_files_under_lists_every_file_of_a_package() -> None:
    m = parse_doc(make_doc())
    assert [e.path for e in m.files_under("pkg.inner")] == [
        "pkg/inner/__init__.py",
        "pkg/inner/deep.py",
    ]
    assert len(m.files_under("pkg")) == 6
    assert len(m.files_under("")) == len(BASE_FILES)


def test_dist_info_dirs() -> None:
    assert parse_doc(make_doc()).dist_info_dirs() == ["pkg-1.0.dist-info"]


# --- time format ---------------------------------------------------------------------------------


def test_time_round_trip() -> None:
    assert manifest.parse_time("2026-11-20T23:00:00Z") == ISSUED
    assert manifest.format_time(ISSUED) == "2026-11-20T23:00:00Z"


def test_format_time_converts_to_utc_and_drops_fractions() -> None:
    local = datetime(2026, 11, 21, 1, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert manifest.format_time(local) == "2026-11-20T23:00:00Z"


def test_format_time_refuses_naive_datetime() -> None:
    with pytest.raises(FormatError):
        manifest.format_time(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T23:00:00",
        "2026-11-20T23:00:00+00:00",
        "2026-11-20 23:00:00Z",
        "2026-11-20T23:00:00.5Z",
        "2026-11-20t23:00:00z",
        "2026-02-30T00:00:00Z",
        "2026-11-20T24:00:00Z",
        "2026-12-31T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "\u0662026-11-20T23:00:00Z",  # Arabic-Indic digit two
        "2026-11-20T23:00:00Z\n",
        "+2026-11-20T23:00:00Z",
    ],
)
def test_non_exact_times_are_refused(text: str) -> None:
    with pytest.raises(FormatError):
        manifest.parse_time(text)
    format_refused(make_doc(issued=text))


def test_issued_after_expires_is_refused() -> None:
    format_refused(make_doc(issued="2027-02-19T00:00:00Z"))


def test_issued_equal_to_expires_is_allowed() -> None:
    m = parse_doc(make_doc(issued="2027-02-18T23:00:00Z"))
    assert m.issued == m.expires


# --- P5: wrong types -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["version", "root_version"])
@pytest.mark.parametrize("value", ["42", True, False, None, 0, -1, 2**53 + 1, [1], {"v": 1}])
def test_wrong_version_types_and_ranges_are_refused(field: str, value: object) -> None:
    format_refused(make_doc(**{field: value}))


def test_version_upper_bound_is_inclusive() -> None:
    assert parse_doc(make_doc(version=2**53)).version == 2**53


@pytest.mark.parametrize(
    "overrides",
    [
        {"_type": "secure-import/root"},
        {"_type": ["secure-import/manifest"]},
        {"spec_version": 2},  # v2 without its requires table
        {"spec_version": 3},
        {"spec_version": True},
        {"spec_version": "1"},
        {"issued": 1700000000},
        {"expires": None},
        {"files": []},
        {"files": "pkg/__init__.py"},
    ],
)
def test_wrong_header_values_are_refused(overrides: dict[str, object]) -> None:
    format_refused(make_doc(**overrides))


@pytest.mark.parametrize(
    "provides",
    [
        [],
        "pkg",
        ["pkg", "pkg", "mod"],
        ["pkg", "mod", 1],
        ["pkg", "mod", "class"],
        ["pkg", "mod", "caf\u00e9"],
        ["pkg", "mod", "a.b"],
        ["pkg", "mod", "1x"],
        ["pkg", "mod", ""],
        ["pkg", "mod", "__init__"],
    ],
)
def test_bad_provides_are_refused(provides: object) -> None:
    format_refused(make_doc(provides=provides))


def test_provided_name_without_module_file_is_refused() -> None:
    format_refused(make_doc(provides=["mod", "pkg", "ghost"]))


def test_soft_keyword_names_may_be_provided() -> None:
    doc = make_doc(provides=["pkg", "mod", "match"])
    doc["files"] = {**file_dict(BASE_FILES), **file_dict(["match.py"])}
    assert "match" in parse_doc(doc).provides


@pytest.mark.parametrize(
    "entry",
    [
        {"sha256": "A" * 64, "length": 1},
        {"sha256": "0" * 63, "length": 1},
        {"sha256": "0" * 65, "length": 1},
        {"sha256": "g" * 64, "length": 1},
        {"sha256": 5, "length": 1},
        {"sha256": "0" * 64, "length": -1},
        {"sha256": "0" * 64, "length": 256 * 1024 * 1024 + 1},
        {"sha256": "0" * 64, "length": "1"},
        {"sha256": "0" * 64, "length": True},
        {"sha256": "0" * 64},
        {"length": 1},
        {"sha256": "0" * 64, "length": 1, "mode": 493},
        "0" * 64,
        None,
    ],
)
def test_bad_file_entries_are_refused(entry: object) -> None:
    files = file_dict(BASE_FILES)
    files["pkg/sub.py"] = entry  # type: ignore[assignment]
    format_refused(make_doc(files=files))


def test_max_file_length_is_inclusive() -> None:
    files = file_dict(BASE_FILES)
    files["pkg/sub.py"]["length"] = manifest.MAX_FILE_LENGTH
    assert parse_doc(make_doc(files=files)).files["pkg/sub.py"].length == manifest.MAX_FILE_LENGTH


def test_too_many_files_is_refused() -> None:
    files = file_dict(["pkg/__init__.py"])
    entry = {"sha256": "0" * 64, "length": 0}
    for index in range(manifest.MAX_FILES):
        files[f"pkg/f{index}.txt"] = entry
    format_refused(make_doc(provides=["pkg"], files=files))


# --- P7: unknown fields --------------------------------------------------------------------------


def test_unknown_top_level_field_is_refused() -> None:
    format_refused(make_doc(signatures=[]))


@pytest.mark.parametrize("field", ["_type", "version", "issued", "files", "provides"])
def test_missing_field_is_refused(field: str) -> None:
    doc = make_doc()
    del doc[field]
    format_refused(doc)


def test_duplicate_version_key_in_manifest_is_refused() -> None:
    payload = encode(make_doc())
    evil = payload.replace(b'"version": 3', b'"version": 3, "version": 99')
    assert evil != payload
    with pytest.raises(FormatError):
        manifest.parse(evil)


def test_float_version_is_refused() -> None:
    with pytest.raises(FormatError):
        manifest.parse(encode(make_doc()).replace(b'"version": 3', b'"version": 3.0'))


def test_non_object_manifest_is_refused() -> None:
    format_refused([make_doc()])


# --- F4 / F5: traversal, absolute paths, odd characters ------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../x.py",
        "pkg/../../x.py",
        "pkg/./x.py",
        "pkg/../pkg/x.py",
        "pkg//x.py",
        "pkg/",
        "/etc/passwd",
        "/pkg/x.py",
        "pkg\\x.py",
        "..\\x.py",
        "C:/x.py",
        "c:x.py",
        "pkg/%2e%2e/x.py",
        "%2e%2e/x.py",
        "pkg/x\x00.py",
        "pkg/x\n.py",
        "pkg/x\x1f.txt",
        "pkg/x\x7f.txt",
        "pkg/caf\u00e9.py",
        "pkg/\uff0e\uff0e/x.py",
        "pkg/x.py/",
        "pkg/.",
        "pkg/..",
        "",
    ],
)
def test_traversal_and_odd_paths_refuse_the_whole_manifest(path: str) -> None:
    err = path_refused(["pkg/__init__.py", "pkg/ok.py", path])
    assert err.check == "path"
    with pytest.raises(UnsafePathError):
        manifest.check_path(path)


def test_refusal_names_the_path() -> None:
    err = path_refused(["pkg/__init__.py", "pkg/../../evil.py"])
    assert "pkg/../../evil.py" in str(err)


def test_control_characters_are_escaped_in_the_message() -> None:
    err = path_refused(["pkg/__init__.py", "pkg/x\x1b[31m.txt"])
    assert "\x1b" not in str(err)


def test_overlong_paths_are_refused() -> None:
    path_refused(["pkg/__init__.py", "pkg/" + "a" * 256 + ".py"])
    deep = "pkg/" + "/".join(["d" * 50] * 20) + "/x.py"
    assert len(deep) > 1024
    path_refused(["pkg/__init__.py", deep])


# --- F7: compiled and magic files ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "pkg/fast.so",
        "pkg/fast.cpython-311-x86_64-linux-gnu.so",
        "pkg/fast.abi3.so",
        "pkg/libfoo.so.1",
        "pkg/fast.pyd",
        "pkg/FAST.PYD",
        "pkg/__pycache__/sub.cpython-311.pyc",
        "pkg/sub.pyc",
        "pkg/sub.pyo",
        "pkg/evil.pth",
        "pkg/evil.PTH",
        "pkg/lib.dll",
        "pkg/lib.dylib",
        "pkg/tool.exe",
        "pkg/x.cpython-311",
        "pkg/__pycache__/README",
        "pkg/sub.PY",
        "pkg/sub.Py",
    ],
)
def test_compiled_or_magic_files_are_refused(path: str) -> None:
    path_refused(["pkg/__init__.py", path])


# --- .py and data file naming --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "pkg/my-mod.py",
        "pkg/1mod.py",
        "pkg/my mod.py",
        "pkg/data-dir/x.py",
        "pkg/.py",
        "pkg/__init__/x.py",
        "pkg/mod.x.py",
    ],
)
def test_py_file_with_non_identifier_components_is_refused(path: str) -> None:
    path_refused(["pkg/__init__.py", path])


@pytest.mark.parametrize(
    "path",
    [
        "pkg/.hidden",
        "pkg/-rf",
        "pkg/data/.gitignore",
        "pkg/a b.txt",
        "pkg/x~",
        "pkg/x*",
        "pkg/trailing.",
        "README.txt",
        "pkg",
        ".git/config",
        "x-1.0.dist-info",
        "-x-1.0.dist-info/METADATA",
        "x-1.0.dist-info/.hidden",
        "not-a-package/file.txt",
    ],
)
def test_bad_data_file_names_are_refused(path: str) -> None:
    path_refused(["pkg/__init__.py", path])


@pytest.mark.parametrize(
    "path",
    [
        "pkg/data/table.csv",
        "pkg/templates/base+1.html",
        "pkg/Makefile",
        "pkg/_private/x-y.json",
        "pkg/stub.pyi",
        "foo_bar-1.0+local.dist-info/RECORD",
        "foo-1!2.0.dist-info/METADATA",
        "foo-1.0.dist-info/licenses/sub/LICENSE.txt",
    ],
)
def test_reasonable_data_file_names_are_accepted(path: str) -> None:
    m = parse_doc(with_files(["pkg/__init__.py", path]))
    assert path in m.files
    manifest.check_path(path)


def test_python_file_inside_dist_info_is_refused() -> None:
    path_refused(["pkg/__init__.py", "pkg-1.0.dist-info/hook.py"])


# --- F6 and layout -------------------------------------------------------------------------------


def test_paths_colliding_after_case_folding_are_refused() -> None:
    err = path_refused(["pkg/__init__.py", "pkg/Sub.py", "pkg/sub.py"])
    assert "case folding" in str(err)


def test_provided_names_colliding_after_case_folding_are_refused() -> None:
    path_refused(["pkg/__init__.py", "PKG/__init__.py"], provides=["pkg", "PKG"])


def test_file_that_is_also_a_directory_is_refused() -> None:
    path_refused(["pkg/__init__.py", "pkg/data", "pkg/data/x.txt"])


def test_file_that_is_a_directory_only_after_case_folding_is_refused() -> None:
    path_refused(["pkg/__init__.py", "pkg/Data", "pkg/data/x.txt"])


def test_module_listed_as_file_and_package_is_refused() -> None:
    err = path_refused(["pkg/__init__.py", "pkg/sub.py", "pkg/sub/__init__.py"])
    assert "package" in str(err)


def test_top_level_module_and_package_together_are_refused() -> None:
    path_refused(["pkg.py", "pkg/__init__.py"])


def test_file_outside_provided_names_is_refused() -> None:
    err = path_refused(["pkg/__init__.py", "other/__init__.py"])
    assert "provides" in str(err)
    path_refused(["pkg/__init__.py", "other.py"])
    path_refused(["pkg/__init__.py", "other/data.txt"])


def test_provides_must_match_case_exactly() -> None:
    path_refused(["Pkg/__init__.py"], provides=["pkg"])


def test_module_and_data_directory_of_same_name_are_allowed() -> None:
    m = parse_doc(with_files(["pkg/__init__.py", "pkg/templates.py", "pkg/templates/a.html"]))
    assert m.find_module("pkg.templates") is not None


def test_one_bad_path_among_many_refuses_everything() -> None:
    paths = ["pkg/__init__.py"] + [f"pkg/m{i}.py" for i in range(500)] + ["pkg/../evil.py"]
    path_refused(paths)


# --- build_payload -------------------------------------------------------------------------------


def entries(paths: list[str]) -> list[FileEntry]:
    return [FileEntry(p, digest(p.encode()), len(p)) for p in paths]


def build(**overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "version": 3,
        "root_version": 1,
        "issued": ISSUED,
        "expires": EXPIRES,
        "provides": ["pkg", "mod"],
        "files": entries(BASE_FILES),
    }
    kwargs.update(overrides)
    return manifest.build_payload(**kwargs)  # type: ignore[arg-type]


def test_build_payload_is_canonical_and_parses_back() -> None:
    payload = build()
    assert (
        payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    )
    m = manifest.parse(payload)
    assert m.provides == ("mod", "pkg")
    assert m == parse_doc(make_doc())


def test_build_sign_verify_parse_round_trip() -> None:
    private = Ed25519PrivateKey.generate()
    payload = build()
    env = envelope.sign(payload, envelope.MANIFEST_PAYLOAD_TYPE, [private])
    verified = envelope.verify(
        env,
        payload_type=envelope.MANIFEST_PAYLOAD_TYPE,
        keys=[public_key_of(private)],
        threshold=1,
    )
    assert verified.payload == payload
    assert manifest.parse(verified.payload).find_module("pkg.inner.deep") is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"version": 0},
        {"version": True},
        {"version": "3"},
        {"root_version": 2**53 + 1},
        {"issued": EXPIRES + timedelta(seconds=1)},
        {"issued": datetime(2026, 1, 1)},
        {"provides": []},
        {"provides": ["pkg", "mod", "ghost"]},
        {"provides": ["pkg", "mod", "pkg"]},
        {"provides": ["pkg", "mod", 3]},
        {"files": [*entries(BASE_FILES), FileEntry("pkg/x.py", "0" * 64, 1.5)]},  # type: ignore[arg-type]
        {"files": [*entries(BASE_FILES), FileEntry("pkg/x.py", "ABC", 1)]},
        {"files": ["pkg/x.py"]},
    ],
)
def test_build_payload_refuses_what_a_consumer_would_refuse(overrides: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        build(**overrides)


@pytest.mark.parametrize(
    "extra",
    [
        [FileEntry("pkg/../x.py", "0" * 64, 1)],
        [FileEntry("pkg/x.so", "0" * 64, 1)],
        [FileEntry("pkg/sub.py", "0" * 64, 1)],  # listed twice
        [FileEntry("pkg/SUB.py", "0" * 64, 1)],
        [FileEntry(7, "0" * 64, 1)],  # type: ignore[arg-type]
    ],
)
def test_build_payload_refuses_unsafe_paths(extra: list[FileEntry]) -> None:
    with pytest.raises(UnsafePathError):
        build(files=[*entries(BASE_FILES), *extra])


# --- properties ----------------------------------------------------------------------------------

_path_piece = st.sampled_from(
    ["pkg", "mod", "sub", "__init__", "..", ".", "", "a.py", "x.so", "Pkg", "data", "1", "-"]
)
_paths = st.lists(_path_piece, min_size=1, max_size=4).map("/".join) | st.text(max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-3, 2**54) | st.text(max_size=10)
_file_entries = (
    st.fixed_dictionaries(
        {
            "sha256": st.sampled_from(["0" * 64, "A" * 64, "0" * 63]) | _scalars,
            "length": st.integers(-1, 2**29) | _scalars,
        }
    )
    | _scalars
)
_manifest_like = st.fixed_dictionaries(
    {
        "_type": st.sampled_from(["secure-import/manifest"]) | _scalars,
        "spec_version": st.sampled_from([1]) | _scalars,
        "version": st.integers(-1, 2**54) | _scalars,
        "root_version": st.integers(-1, 3) | _scalars,
        "issued": st.sampled_from(["2026-11-20T23:00:00Z", "2026-13-01T00:00:00Z"]) | _scalars,
        "expires": st.sampled_from(["2027-02-18T23:00:00Z"]) | _scalars,
        "provides": st.lists(st.sampled_from(["pkg", "mod", "Pkg", "class", "x y"]) | _scalars)
        | _scalars,
        "files": st.dictionaries(_paths, _file_entries, max_size=6) | _scalars,
    },
    optional={"extra": _scalars},
)


@settings(max_examples=200, deadline=None)
@given(_manifest_like)
def test_arbitrary_manifest_like_dicts_raise_only_format_or_path_errors(doc: object) -> None:
    try:
        m = parse_doc(doc)
    except (FormatError, UnsafePathError):
        return
    for path in m.files:
        manifest.check_path(path)


@settings(max_examples=200, deadline=None)
@given(st.lists(_paths, min_size=1, max_size=5))
def test_arbitrary_path_sets_raise_only_path_or_format_errors(paths: list[str]) -> None:
    try:
        m = parse_doc(with_files(["pkg/__init__.py", *paths]))
    except (FormatError, UnsafePathError):
        return
    folded = [p.casefold() for p in m.files]
    assert len(set(folded)) == len(folded)
    for path in m.files:
        assert ".." not in path.split("/") and not path.startswith("/")
