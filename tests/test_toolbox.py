"""Toolbox lookups and loading tools from module files by path."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmc


def test_lookup_and_helpful_unknown_error() -> None:
    @llmc.tool
    def search(query: str) -> str:
        """Search."""
        return query

    box = llmc.Toolbox([search, len])
    assert box["search"] is search
    assert list(box) == ["search", "len"]
    assert "search" in box and "nope" not in box
    with pytest.raises(
        llmc.UnknownToolError, match=r"did you mean 'search'\?.*known tools: search, len"
    ):
        box["serch"]


def test_duplicate_names_are_refused() -> None:
    def one(x: int) -> int:
        return x

    def two(x: int) -> int:
        return x

    with pytest.raises(llmc.DuplicateToolError, match="two tools are named 'same'"):
        llmc.Toolbox([llmc.tool(name="same")(one), llmc.tool(name="same")(two)])


def test_load_tools_from_a_file(tmp_path: Path) -> None:
    pack = tmp_path / "mypack.py"
    pack.write_text(
        "import llmc\n\n"
        "@llmc.tool\ndef shout(text: str) -> str:\n"
        "    '''Upper-case text.'''\n    return text.upper()\n\n"
        "@llmc.tool\nasync def whisper(text: str) -> str:\n"
        "    '''Lower-case text.'''\n    return text.lower()\n"
    )
    tools = llmc.load_tools(pack)
    assert [t.name for t in tools] == ["shout", "whisper"]
    assert tools[0]("hi") == "HI"
    assert list(llmc.Toolbox.from_path(pack)) == ["shout", "whisper"]


@pytest.mark.parametrize(
    ("content", "name", "words"),
    [
        (None, "missing.py", "no tool module at"),
        ("x = 1\n", "empty.py", "defines no tools"),
        ("raise RuntimeError('boom')\n", "broken.py", "RuntimeError: boom"),
        ("", "notes.txt", "not a Python file"),
    ],
)
def test_load_errors_say_what_is_wrong(tmp_path: Path, content, name, words) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(llmc.ToolLoadError, match=words):
        llmc.load_tools(path)
