"""The library stays clean under the project's linters: ruff and strict mypy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["llmc", "tools", "tests", "benchmarks", "examples"]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", *SOURCES],
        [sys.executable, "-m", "ruff", "format", "--check", *SOURCES],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
@pytest.mark.timeout(900)  # a cold mypy cache on a loaded 2-core machine takes minutes
def test_linters_are_clean(command: list[str]) -> None:
    module = command[2]
    if (
        shutil.which(module) is None
        and subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True
        ).returncode
    ):
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
