"""Concurrency limits, rate limits, and makespan against the critical path."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from asyncio_throttle.throttler import Throttler

import llmc
from llmc import Plan, Ref, Task


class Gauge:
    """Counts calls running at once, overall and per tool, and keeps the highest counts."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.starts: list[float] = []

    async def hold(self, name: str, seconds: float) -> None:
        self.starts.append(time.monotonic())
        for key in (name, "*"):
            self.now[key] += 1
            self.peak[key] = max(self.peak[key], self.now[key])
        try:
            await asyncio.sleep(seconds)
        finally:
            for key in (name, "*"):
                self.now[key] -= 1


def make_tool(gauge: Gauge, name: str, **options: Any) -> llmc.Tool:
    async def run(seconds: float) -> None:
        await gauge.hold(name, seconds)

    run.__doc__ = "Hold a slot for a while.\n\nArgs:\n    seconds: how long."
    return llmc.tool(name=name, **options)(run)


async def test_the_run_wide_limit_is_reached_and_never_exceeded() -> None:
    gauge = Gauge()
    tool = make_tool(gauge, "work")
    tasks = [Task(i, "work", (0.01,)) for i in range(1, 11)]
    result = await llmc.run_plan(tasks, tools=[tool], max_concurrency=3)
    assert result.ok and gauge.peak["*"] == 3


async def test_a_full_tool_does_not_hold_run_wide_slots() -> None:
    gauge = Gauge()
    single = make_tool(gauge, "single", max_concurrency=1)
    other = make_tool(gauge, "other")
    tasks = [Task(i, "single", (0.02,)) for i in range(1, 6)]
    tasks += [Task(i, "other", (0.02,)) for i in range(6, 11)]
    result = await llmc.run_plan(tasks, tools=[single, other], max_concurrency=3)
    assert result.ok
    assert gauge.peak["single"] == 1
    assert gauge.peak["*"] == 3
    assert gauge.peak["other"] >= 2, "waiting 'single' calls did not block 'other'"


async def test_per_tool_limits_hold_across_dependencies() -> None:
    gauge = Gauge()
    pair = make_tool(gauge, "pair", max_concurrency=2)

    @llmc.tool
    async def fan(value: Any) -> None:
        """Ignore the value.

        Args:
            value: anything.
        """

    tasks = [Task(1, "fan", (None,))]
    tasks += [Task(i, "pair", (0.005 * (i % 3),), {}) for i in range(2, 12)]
    tasks += [Task(12, "fan", ([Ref(i) for i in range(2, 12)],))]
    result = await llmc.run_plan(tasks, tools=[pair, fan])
    assert result.ok and gauge.peak["pair"] == 2


def assert_rate(starts: list[float], rate: int, period: float) -> None:
    """No ``rate + 1`` call starts fall within one ``period`` (1 ms of clock slack)."""
    starts = sorted(starts)
    for first, last in zip(starts, starts[rate:], strict=False):
        assert last - first > period - 0.001, (starts, rate, period)


async def test_rate_limits_hold_for_call_starts_and_across_runs() -> None:
    gauge = Gauge()
    throttler = Throttler(rate_limit=2, period=0.05, retry_interval=0.002)
    limited = make_tool(gauge, "limited", rate_limit=throttler)
    tasks = [Task(i, "limited", (0.0,)) for i in range(1, 6)]
    start = time.monotonic()
    first, second = await asyncio.gather(
        llmc.run_plan(tasks, tools=[limited]), llmc.run_plan(tasks, tools=[limited])
    )
    assert first.ok and second.ok and len(gauge.starts) == 10
    assert_rate(gauge.starts, 2, 0.05)
    assert time.monotonic() - start >= 0.2  # 10 calls at 2 per 50 ms


async def test_makespan_follows_the_critical_path_not_the_levels() -> None:
    @llmc.tool
    async def sleep(seconds: float, after: Any = None) -> None:
        """Sleep.

        Args:
            seconds: how long.
            after: an output to wait for.
        """
        await asyncio.sleep(seconds)

    # Two chains, long-short and short-long: 0.315 s each. Level by level it would take
    # max(0.3, 0.015) + max(0.015, 0.3) = 0.6 s.
    plan = Plan(tools=[sleep])
    a = plan.add(sleep, 0.3)
    b = plan.add(sleep, 0.015)
    plan.add(sleep, 0.015, a)
    plan.add(sleep, 0.3, b)
    assert plan.levels() == [[1, 2], [3, 4]]
    result = await llmc.run_plan(plan)
    critical, _ = plan.critical_path(lambda task: task.args[0])
    assert critical == pytest.approx(0.315)
    assert critical <= result.trace.makespan < 0.5
