"""grep's regexes cannot stall the loop: RE2 matches in linear time, with the GIL released."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tool_packs import import_pack

import llmc
from llmc.executors import AsyncioExecutor

# Patterns that backtrack exponentially in Python's re on "a" * n + "!".
CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a*)*b", "(a|a?)+b", "(.*a){20}$"]


@pytest.fixture
def pack(tmp_path: Path) -> ModuleType:
    module = import_pack("files")
    (tmp_path / "evil.txt").write_text("a" * 40 + "!\n" + "fine line\n")
    module.set_root(tmp_path)
    return module


@pytest.mark.timeout(60)  # Python's re takes about 8 s at 27 characters, doubling per one more
@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_finish(pack: ModuleType, pattern: str) -> None:
    assert pack.grep(pattern, regex=True) == []


@pytest.mark.timeout(60)
async def test_the_event_loop_runs_on_while_grep_matches(pack: ModuleType) -> None:
    assert pack.__file__ is not None
    tools = {t.name: t for t in llmc.load_tools(Path(pack.__file__))}
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticking = asyncio.create_task(ticker())
    big = Path(pack.get_root()) / "big.txt"
    big.write_text(("a" * 5000 + "!\n") * 2000)
    plan = llmc.Plan()
    for pattern in CATASTROPHIC:
        plan.add("grep", pattern, regex=True)
    result = await llmc.run_plan(plan, tools=[tools["grep"]])
    ticking.cancel()
    assert result.ok and ticks > 0


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    needle=st.text(alphabet="ab.*+?()[]|^$\\{} -x", min_size=1, max_size=6),
    ignore_case=st.booleans(),
)
def test_plain_text_search_matches_what_python_finds(pack, needle, ignore_case) -> None:
    lines = ["a" * 40 + "!", "fine line"]
    flags = re.IGNORECASE if ignore_case else 0
    expected = [
        f"evil.txt:{n}: {line}"
        for n, line in enumerate(lines, 1)
        if re.search(re.escape(needle), line, flags)
    ]
    assert pack.grep(needle, ignore_case=ignore_case) == expected


def test_patterns_re2_cannot_run_are_refused_with_what_to_do(pack: ModuleType) -> None:
    with pytest.raises(ValueError, match="no backreferences or lookarounds"):
        pack.grep(r"(a)\1", regex=True)
    with pytest.raises(ValueError, match="regex=False"):
        pack.grep(r"(?<=a)b", regex=True)


@pytest.mark.timeout(60)
async def test_sync_calls_past_their_timeout_never_hold_up_other_tasks() -> None:
    # More stuck calls than the pool has threads: without a thread lent per stuck call, the
    # quick sync call would wait for them all (a hang: they wait for the test to let go).
    let_go = threading.Event()

    @llmc.tool(timeout=0.05)
    def stuck(n: int) -> str:
        """Block until the test lets go.

        Args:
            n: which call.
        """
        let_go.wait(120)
        return "late"

    @llmc.tool
    def quick(n: int) -> int:
        """Return at once.

        Args:
            n: a number.
        """
        return n

    plan = llmc.Plan()
    for i in range(12):
        plan.add("stuck", i)
    stuck_ids = {t.id for t in plan}
    for i in range(3):
        plan.add("quick", i)
    with AsyncioExecutor(max_workers=4) as executor:
        result = await llmc.run_plan(plan, tools=[stuck, quick], executor=executor)
        finished_before_release = not let_go.is_set()
        let_go.set()
    assert finished_before_release
    for task_id, status in result.statuses.items():
        expected = llmc.TaskStatus.FAILED if task_id in stuck_ids else llmc.TaskStatus.DONE
        assert status is expected
    assert all(isinstance(e, llmc.ToolTimeoutError) for e in result.errors.values())
