"""File tools open by descriptor from the root: hard links out and symlinks swapped in after
the checks (a race) read nothing outside the root."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
from tool_packs import import_pack


@pytest.fixture
def rooted(tmp_path: Path) -> tuple[ModuleType, Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "mine.txt").write_text("mine\n")
    (outside / "secret.txt").write_text("secret TODO\n")
    (outside / "mine.txt").write_text("secret too\n")
    pack = import_pack("files")
    pack.set_root(root)
    return pack, root, outside


def test_a_hard_link_to_a_file_outside_is_refused_by_every_tool(rooted) -> None:
    pack, root, outside = rooted
    os.link(outside / "secret.txt", root / "linked.txt")
    with pytest.raises(PermissionError, match="hard links"):
        pack.read_file("linked.txt")
    with pytest.raises(PermissionError, match="hard links"):
        pack.count_file("linked.txt")
    assert pack.grep("secret") == []  # skipped, not shown
    assert pack.read_file("sub/mine.txt") == "mine\n"  # files of one link read as ever


def test_a_symlink_swapped_in_after_the_checks_is_not_followed(rooted) -> None:
    pack, root, outside = rooted
    real, display, checked_root = pack._open_file("sub/mine.txt")  # the checks pass
    (root / "sub").rename(root / "old")
    (root / "sub").symlink_to(outside, target_is_directory=True)  # then the swap
    with pytest.raises(PermissionError, match="changed while it was being opened"):
        pack._open_inside(real, checked_root, display)


def test_a_file_swapped_for_a_symlink_is_not_followed(rooted) -> None:
    pack, root, outside = rooted
    real, display, checked_root = pack._open_file("sub/mine.txt")
    (root / "sub" / "mine.txt").unlink()
    (root / "sub" / "mine.txt").symlink_to(outside / "mine.txt")
    with pytest.raises(PermissionError, match="changed while it was being opened"):
        pack._open_inside(real, checked_root, display)
