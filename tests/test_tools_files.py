"""The files tool pack (tools/files.py): listing, reading, searching, counting, confinement."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from tool_packs import import_pack, pack_path

import llmc

PACK = pack_path("files")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMC_FILES_ROOT", raising=False)
    monkeypatch.delenv("LLMC_FILES_MAX_BYTES", raising=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A files root with text, binary, hidden and nested files, and symlinks in and out."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    outside.mkdir()
    (root / "a.txt").write_text("alpha\nbeta\ngamma\n")
    (root / "notes" / "todo.md").write_text("- [ ] TODO write tests\n- [x] done\n")
    (root / "notes" / "deep" / "x.py").write_text("print('todo')\n")
    (root / ".hidden" / "h.txt").write_text("TODO hidden\n")
    (root / "data.bin").write_bytes(b"\x89PNG\x00\x01\x02TODO" * 10)
    (outside / "secret.txt").write_text("TODO secret\n")
    (root / "link_in.txt").symlink_to(root / "a.txt")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    return root


@pytest.fixture
def pack(tree: Path) -> ModuleType:
    module = import_pack("files")
    module.set_root(tree)
    return module


def test_load_tools_finds_every_tool() -> None:
    tools = llmc.load_tools(PACK)
    assert [t.name for t in tools] == ["list_files", "read_file", "grep", "count_file"]
    for t in tools:
        assert t.description and t.docstring.params.keys() == set(t.parameters)
        assert not t.is_async
    box = llmc.Toolbox.from_path(PACK)
    assert "read_file(path: str, start_line: int | None = None" in box.signatures()


def test_works_under_any_module_name_and_roots_are_per_copy(tmp_path: Path) -> None:
    one, two = import_pack("files", register=False), import_pack("files")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    (tmp_path / "1" / "f.txt").write_text("one\n")
    (tmp_path / "2" / "f.txt").write_text("two\n")
    one.set_root(tmp_path / "1")
    two.set_root(tmp_path / "2")
    assert one.read_file("f.txt") == "one\n"
    assert two.read_file("f.txt") == "two\n"


def test_set_root_reachable_from_loaded_tools(tree: Path) -> None:
    tools = {t.name: t for t in llmc.load_tools(PACK)}
    sys.modules[tools["read_file"].fn.__module__].set_root(tree / "notes")
    assert tools["read_file"]("todo.md").startswith("- [ ] TODO")


# -- root -------------------------------------------------------------------------------------


def test_root_from_environment(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_pack("files")
    monkeypatch.setenv("LLMC_FILES_ROOT", str(tree / "notes"))
    assert module.get_root() == (tree / "notes").resolve()
    assert module.read_file("todo.md").startswith("- [ ]")


def test_root_defaults_to_working_directory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_pack("files")
    monkeypatch.chdir(tree / "notes" / "deep")
    assert module.read_file("x.py") == "print('todo')\n"
    monkeypatch.chdir(tree)
    assert module.read_file("a.txt").startswith("alpha")


def test_set_root_wins_over_environment_and_none_resets(
    pack: ModuleType, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMC_FILES_ROOT", str(tree / "notes"))
    assert pack.get_root() == tree.resolve()
    pack.set_root(None)
    assert pack.get_root() == (tree / "notes").resolve()


def test_bad_roots_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_pack("files")
    with pytest.raises(NotADirectoryError, match="not an existing folder"):
        module.set_root(tmp_path / "missing")
    monkeypatch.setenv("LLMC_FILES_ROOT", str(tmp_path / "missing"))
    with pytest.raises(NotADirectoryError, match="LLMC_FILES_ROOT"):
        module.read_file("x")


# -- confinement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "notes/../../outside/secret.txt",
        "/etc/passwd",
        "OUTSIDE_ABSOLUTE",
        "link_out.txt",
        "link_dir/secret.txt",
        "link_dir",
    ],
)
def test_paths_outside_the_root_are_refused(pack: ModuleType, tree: Path, path: str) -> None:
    if path == "OUTSIDE_ABSOLUTE":
        path = str(tree.parent / "outside" / "secret.txt")
    tools = {t.name: t for t in pack.__dict__.values() if isinstance(t, llmc.Tool)}
    for call in (
        lambda: tools["read_file"](path),
        lambda: tools["count_file"].fn(path),
        lambda: tools["list_files"](folder=path),
        lambda: tools["grep"]("TODO", folder=path),
    ):
        with pytest.raises(PermissionError) as info:
            call()
        message = str(info.value)
        assert "outside the files root" in message
        assert str(tree.resolve()) in message
        assert "secret" not in message.replace("secret.txt", "")


def test_paths_that_stay_inside_are_fine(pack: ModuleType, tree: Path) -> None:
    assert pack.read_file("notes/../a.txt").startswith("alpha")
    assert pack.read_file(str(tree / "a.txt")).startswith("alpha")
    assert pack.read_file("link_in.txt").startswith("alpha")
    assert pack.read_file("  a.txt  ").startswith("alpha")


def test_nul_in_path_is_refused(pack: ModuleType) -> None:
    with pytest.raises(ValueError, match="NUL"):
        pack.read_file("a.txt\x00.png")


# -- list_files --------------------------------------------------------------------------------


def test_list_files(pack: ModuleType) -> None:
    assert pack.list_files() == ["a.txt", "data.bin", "link_in.txt"]
    assert pack.list_files("*.txt") == ["a.txt", "link_in.txt"]
    assert pack.list_files(recursive=True) == [
        "a.txt",
        "data.bin",
        "link_in.txt",
        "notes/deep/x.py",
        "notes/todo.md",
    ]
    assert pack.list_files("*.py", "notes", recursive=True) == ["notes/deep/x.py"]
    assert pack.list_files("deep/*.py", recursive=True) == ["notes/deep/x.py"]
    assert pack.list_files("*.md", "notes") == ["notes/todo.md"]
    assert pack.list_files("*.nothing", recursive=True) == []
    assert pack.list_files(folder=".hidden") == [".hidden/h.txt"]  # named explicitly


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_files_are_not_opened(pack: ModuleType, tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    with pytest.raises(ValueError, match="not a regular file"):
        pack.read_file("pipe")
    assert "pipe" not in pack.list_files()
    assert pack.grep("never there") == []  # does not block on the pipe


def test_list_files_caps_results_with_a_note(pack: ModuleType) -> None:
    listed = pack.list_files(recursive=True, max_results=2)
    assert listed[:2] == ["a.txt", "data.bin"]
    assert listed[2].startswith("... 3 more files not listed")


def test_list_files_errors(pack: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"without '\.\.'"):
        pack.list_files("../*")
    with pytest.raises(FileNotFoundError, match="no folder 'nope'"):
        pack.list_files(folder="nope")
    with pytest.raises(NotADirectoryError, match=r"'a\.txt' is a file"):
        pack.list_files(folder="a.txt")
    with pytest.raises(ValueError, match="max_results"):
        pack.list_files(max_results=0)


# -- read_file ---------------------------------------------------------------------------------


def test_read_file_whole_and_ranges(pack: ModuleType) -> None:
    assert pack.read_file("a.txt") == "alpha\nbeta\ngamma\n"
    assert pack.read_file("a.txt", 2) == "beta\ngamma\n"
    assert pack.read_file("a.txt", 2, 2) == "beta\n"
    assert pack.read_file("a.txt", end_line=1) == "alpha\n"
    assert pack.read_file("a.txt", 1, 99) == "alpha\nbeta\ngamma\n"
    assert pack.read_file("a.txt", 3, 3) == "gamma\n"


def test_read_file_range_errors(pack: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"start_line 4 is past the end of 'a\.txt', which has 3"):
        pack.read_file("a.txt", 4)
    with pytest.raises(ValueError, match="end_line 1 comes before start_line 2"):
        pack.read_file("a.txt", 2, 1)
    with pytest.raises(ValueError, match="counts from 1"):
        pack.read_file("a.txt", 0)


def test_read_file_through_the_tool_validates(pack: ModuleType) -> None:
    read = pack.read_file
    assert isinstance(read, llmc.Tool)
    assert read("a.txt", "2", "2") == "beta\n"  # coerced by the schema
    with pytest.raises(llmc.ToolArgumentError, match="start_line"):
        read("a.txt", start_line="two")
    with pytest.raises(llmc.ToolArgumentError, match="missing required argument 'path'"):
        read()
    assert read.fn("a.txt", 1, 1) == "alpha\n"


def test_missing_file_names_the_relative_path(pack: ModuleType) -> None:
    with pytest.raises(FileNotFoundError) as info:
        pack.read_file("notes/todo.mdx")
    message = str(info.value)
    assert "no file 'notes/todo.mdx'" in message
    assert "did you mean 'todo.md'" in message
    with pytest.raises(IsADirectoryError, match="'notes' is a folder"):
        pack.read_file("notes")


def test_binary_files_are_described_not_dumped(pack: ModuleType) -> None:
    assert pack.read_file("data.bin") == "[binary file 'data.bin': 110 bytes, not shown]"
    with pytest.raises(ValueError, match=r"binary file 'data\.bin'"):
        pack.count_file("data.bin")


def test_large_file_is_truncated_at_a_line_with_a_marker(
    pack: ModuleType, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [f"line {n:04d}\n" for n in range(1, 201)]  # 10 bytes each
    (tree / "big.txt").write_text("".join(lines))
    monkeypatch.setenv("LLMC_FILES_MAX_BYTES", "105")
    text = pack.read_file("big.txt")
    body, marker = text.rsplit("\n[", 1)
    assert body + "\n" == "".join(lines[:10])
    assert marker.startswith("truncated: showed lines 1-10 of 'big.txt' (2,000 bytes in all")
    assert "start_line=11" in marker
    text = pack.read_file("big.txt", 11, 12)
    assert text == "line 0011\nline 0012\n"
    text = pack.read_file("big.txt", 195)
    assert text == "".join(lines[194:])


def test_single_line_longer_than_the_limit(
    pack: ModuleType, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree / "wide.txt").write_text("é" * 100 + "\nnext\n")  # 2 bytes per character
    monkeypatch.setenv("LLMC_FILES_MAX_BYTES", "51")
    text = pack.read_file("wide.txt")
    assert text.startswith("é" * 25 + "\n[truncated: line 1 of 'wide.txt' is longer than")
    assert pack.read_file("wide.txt", 2) == "next\n"


def test_default_limit_on_a_megabyte_file(pack: ModuleType, tree: Path) -> None:
    line = b"0123456789abcdef" * 7 + b"\n"  # 113 bytes
    (tree / "huge.log").write_bytes(line * 15_000)  # about 1.7 MB
    text = pack.read_file("huge.log")
    assert len(text.encode()) < pack.DEFAULT_MAX_BYTES + 300
    assert "[truncated: showed lines 1-8849 of 'huge.log'" in text


def test_bad_max_bytes_setting(pack: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMC_FILES_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="LLMC_FILES_MAX_BYTES must be a positive number"):
        pack.read_file("a.txt")


# -- grep --------------------------------------------------------------------------------------


def test_grep_plain_text_regex_and_case(pack: ModuleType) -> None:
    assert pack.grep("TODO") == ["notes/todo.md:1: - [ ] TODO write tests"]
    assert pack.grep("todo", ignore_case=True) == [
        "notes/deep/x.py:1: print('todo')",
        "notes/todo.md:1: - [ ] TODO write tests",
    ]
    assert pack.grep("[x]") == ["notes/todo.md:2: - [x] done"]  # plain text, not a class
    assert pack.grep(r"^(alpha|gamma)$", regex=True) == [
        "a.txt:1: alpha",
        "a.txt:3: gamma",
        "link_in.txt:1: alpha",
        "link_in.txt:3: gamma",
    ]
    assert pack.grep("done", file_pattern="*.md", folder="notes") == ["notes/todo.md:2: - [x] done"]


def test_grep_never_reads_outside_or_hidden_or_binary(pack: ModuleType) -> None:
    hits = pack.grep("TODO", max_hits=100)
    assert not any("secret" in hit or "hidden" in hit or "data.bin" in hit for hit in hits)


def test_grep_caps_hits(pack: ModuleType, tree: Path) -> None:
    (tree / "many.txt").write_text("hit\n" * 30)
    hits = pack.grep("hit", max_hits=5)
    assert hits[:5] == [f"many.txt:{n}: hit" for n in range(1, 6)]
    assert hits[5].startswith("... more hits not shown (max_hits=5)")
    assert len(hits) == 6


def test_grep_errors(pack: ModuleType) -> None:
    with pytest.raises(ValueError, match="invalid regular expression '\\(unclosed'"):
        pack.grep("(unclosed", regex=True)
    assert pack.grep("(unclosed") == []
    with pytest.raises(ValueError, match="pattern is empty"):
        pack.grep("")


# -- count_file --------------------------------------------------------------------------------


def test_count_file(pack: ModuleType, tree: Path) -> None:
    assert pack.count_file("a.txt") == {"lines": 3, "words": 3, "characters": 17, "bytes": 17}
    (tree / "u.txt").write_text("héllo  wörld\nlast line no newline")
    assert pack.count_file("u.txt") == {"lines": 2, "words": 6, "characters": 33, "bytes": 35}
    (tree / "empty.txt").write_text("")
    assert pack.count_file("empty.txt") == {"lines": 0, "words": 0, "characters": 0, "bytes": 0}


def test_count_file_across_chunks(pack: ModuleType, tree: Path) -> None:
    text = ("word " * 300_000)[:-1] + "é" * 10  # > 1 MiB, one line, a chunk boundary in a word
    (tree / "long.txt").write_text(text)
    counts = pack.count_file("long.txt")
    assert counts == {
        "lines": 1,
        "words": len(text.split()),
        "characters": len(text),
        "bytes": len(text.encode()),
    }


# -- running as a tool -------------------------------------------------------------------------


async def test_tools_run_in_a_worker_thread(pack: ModuleType) -> None:
    results = await asyncio.gather(
        pack.read_file.invoke({"path": "a.txt", "start_line": 2, "end_line": 2}),
        pack.count_file.invoke({"path": "a.txt"}),
        pack.list_files.invoke({"pattern": "*.md", "folder": "notes"}),
    )
    assert list(results) == [
        "beta\n",
        {"lines": 3, "words": 3, "characters": 17, "bytes": 17},
        ["notes/todo.md"],
    ]


def test_no_init_module_in_tools() -> None:
    assert not (PACK.parent / "__init__.py").exists()
    assert os.path.basename(PACK) == "files.py"


def test_file_contents_passed_as_a_path_get_a_short_clear_error(pack: ModuleType) -> None:
    tools = {t.name: t for t in llmc.load_tools(PACK)}
    contents = "# A title\n" + "a long line of text " * 200
    with pytest.raises(ValueError, match="is not a file path") as info:
        tools["read_file"](contents)
    assert len(str(info.value)) < 200
