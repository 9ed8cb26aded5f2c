"""The documentation runs as written: every Python block, every plan, every example.

Blocks are found by their info string, in README.md and every docs/*.md, so new ones are
covered without touching this file:

- ```` ```python ````: a complete program. It runs in a fresh interpreter, in an empty
  temporary folder (so it may write files), with this checkout first on ``sys.path`` and no
  model configured from the environment; it must exit with 0 (or stop with llmc's ImportError
  that names a missing extra: then it is skipped, with that message).
- ```` ```plan ````: a plan. It runs with the ready-made tool packs and the example tools of
  ``examples/tools/``, from the repository's root, and every task must end done.
- anything else (```` ```text ```` for output and listings, ```` ```sh ````, ...) is not run.
  Python that is not meant to run as a whole does not belong in a ```` ```python ```` block:
  show it as ```` ```text ````.

The example plans of ``examples/plans/`` run the same way, and the example scripts of
``examples/`` run with a temporary output folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import llmc
from llmc import catalog

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_TOOLS = sorted((REPO / "examples" / "tools").glob("*.py"))
TIMEOUT = 180  # seconds a block may take: generous, only a hang fails it

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    info: str
    code: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(info: str) -> list[Block]:
    """Every block of the pages whose info string is ``info``."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            if match.group(1).strip() == info:
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(page, line, info, match.group(2)))
    return found


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter with ``args``; it imports this checkout's llmc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMC_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def shipped_tools() -> llmc.Toolbox:
    """The ready-made packs and the example tools: what the documented plans may call."""
    box = llmc.Toolbox()
    packs: list[str | Path] = [*catalog.tool_packs(), *EXAMPLE_TOOLS]
    for pack in packs:
        for found in catalog.load_pack(pack):
            box.add(found)
    return box


def test_the_pages_have_blocks_to_run() -> None:
    assert len(blocks("python")) >= 7
    assert blocks("plan")


@pytest.mark.timeout(TIMEOUT + 30)  # beyond the subprocess's own limit
@pytest.mark.parametrize("block", blocks("python"), ids=str)
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    done = run_python(["-c", block.code], tmp_path)
    last = done.stderr.strip().rsplit("\n", 1)[-1]
    if done.returncode and last.startswith("ImportError") and 'pip install -e ".[' in last:
        pytest.skip(f"{block} needs an extra that is not installed: {last}")  # llmc's own hint
    assert done.returncode == 0, f"{block} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def run_plan(text: str) -> llmc.Result:
    plan = llmc.Plan.parse(text, tools=shipped_tools())
    return llmc.run_plan_sync(plan, timeout=60)


@pytest.mark.parametrize("block", blocks("plan"), ids=str)
def test_plan_block_runs_with_the_shipped_tools(
    block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LLMC_FILES_ROOT", raising=False)
    result = run_plan(block.code)
    assert result.ok, f"{block}: {result.errors} {dict(result.skipped)}"


@pytest.mark.parametrize(
    "path", sorted((REPO / "examples" / "plans").glob("*.plan")), ids=lambda p: p.name
)
def test_example_plan_runs_with_the_shipped_tools(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LLMC_FILES_ROOT", raising=False)
    result = run_plan(path.read_text(encoding="utf-8"))
    assert result.ok, f"{path.name}: {result.errors} {dict(result.skipped)}"


@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_script_runs(path: Path, tmp_path: Path) -> None:
    done = run_python([str(path), str(tmp_path / "out")], REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def test_messages_never_point_at_a_package_index_install() -> None:
    """llmc-framework is on no index: messages and docs name ``pip install -e ".[extra]"``."""
    index_install = re.compile(r"pip install[^\n`]*llmc-framework")
    offenders = []
    for folder in ("llmc", "tools", "benchmarks", "examples", "docs", "planners"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".jinja", ".txt"} and path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                offenders += [f"{path.relative_to(REPO)}" for _ in index_install.finditer(text)]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    offenders += ["README.md" for _ in index_install.finditer(readme)]
    assert not offenders, offenders
