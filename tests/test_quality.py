"""The library stays clean under the project's linters: ruff and strict mypy (and the tests,
tools, benchmarks and examples under a milder mypy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["llmc", "tools", "tests", "benchmarks", "examples"]
# The code around the library is type-checked too (not tools/: its math.py would shadow
# the standard library's for mypy), with its function bodies checked but its
# test functions and fixtures free to stay unannotated (pytest supplies their arguments).
AROUND = [
    "--check-untyped-defs",
    "--allow-untyped-defs",
    "--allow-incomplete-defs",
    "--allow-untyped-calls",
    "--allow-untyped-decorators",
    "--allow-subclassing-any",
    "--allow-any-generics",
    "--no-warn-return-any",
]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", *SOURCES],
        [sys.executable, "-m", "ruff", "format", "--check", *SOURCES],
        [sys.executable, "-m", "mypy"],
        [sys.executable, "-m", "mypy", *AROUND, "tests", "benchmarks", "examples"],
    ],
    ids=["ruff", "ruff-format", "mypy", "mypy-around"],
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
