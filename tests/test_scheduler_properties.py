"""Property tests of the scheduler's invariants over random DAGs (hypothesis).

Each example builds a random plan with millisecond tasks, some of which fail, runs it on a
fresh event loop with instrumented tools, and checks what DESIGN.md promises: every task runs
exactly once and only after its dependencies; exactly the dependents of failures are skipped;
limits hold; nothing is left running.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asyncio_throttle.throttler import Throttler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmc
from llmc import Ref, Task, TaskStatus

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOL_NAMES = ("a", "b", "c")


@dataclass
class Spec:
    """A random plan: per task its dependencies, tool, duration and whether it fails."""

    deps: list[list[int]]
    tools: list[str]
    millis: list[float]
    fails: list[bool]
    tool_limits: dict[str, int | None]
    max_concurrency: int | None

    @property
    def ids(self) -> range:
        return range(1, len(self.deps) + 1)


@st.composite
def specs(draw: st.DrawFn, max_tasks: int = 12) -> Spec:
    n = draw(st.integers(1, max_tasks))
    deps = [
        sorted(draw(st.lists(st.integers(1, i - 1), max_size=3, unique=True))) if i > 1 else []
        for i in range(1, n + 1)
    ]
    return Spec(
        deps=deps,
        tools=[draw(st.sampled_from(TOOL_NAMES)) for _ in range(n)],
        millis=[draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])) for _ in range(n)],
        fails=[draw(st.integers(0, 5)) == 0 for _ in range(n)],
        tool_limits={name: draw(st.none() | st.integers(1, 3)) for name in TOOL_NAMES},
        max_concurrency=draw(st.none() | st.integers(1, 4)),
    )


@dataclass
class Recorder:
    """What the instrumented tools saw."""

    runs: Counter[int] = field(default_factory=Counter)
    finished: set[int] = field(default_factory=set)
    active: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    starts: list[tuple[float, int]] = field(default_factory=list)  # perf_counter, task id
    problems: list[str] = field(default_factory=list)


def build_tools(spec: Spec, rec: Recorder, throttler: Throttler | None = None) -> list[llmc.Tool]:
    return [build_tool(name, spec, rec, throttler) for name in TOOL_NAMES]


def build_tool(name: str, spec: Spec, rec: Recorder, throttler: Throttler | None) -> llmc.Tool:
    """An instrumented tool: records runs, start times, concurrency and early starts."""

    async def work(task_id: int, deps: list[int], ms: float, fail: bool) -> int:
        rec.runs[task_id] += 1
        rec.starts.append((time.perf_counter(), task_id))
        if deps != spec.deps[task_id - 1]:
            rec.problems.append(f"task {task_id} got {deps} for its dependencies' outputs")
        early = [d for d in deps if d not in rec.finished]
        if early:
            rec.problems.append(f"task {task_id} started before {early} finished")
        for key in (name, "*"):
            rec.active[key] += 1
            rec.peak[key] = max(rec.peak[key], rec.active[key])
        try:
            await asyncio.sleep(ms / 1000)
        finally:
            for key in (name, "*"):
                rec.active[key] -= 1
            rec.finished.add(task_id)
        if fail:
            raise ValueError(f"task {task_id} fails on purpose")
        return task_id

    work.__doc__ = "Instrumented work."
    return llmc.tool(name=name, max_concurrency=spec.tool_limits[name], rate_limit=throttler)(work)


def build_tasks(spec: Spec) -> list[Task]:
    return [
        Task(
            i,
            spec.tools[i - 1],
            (i, [Ref(d) for d in spec.deps[i - 1]], spec.millis[i - 1], spec.fails[i - 1]),
        )
        for i in spec.ids
    ]


def expected_statuses(spec: Spec) -> dict[int, TaskStatus]:
    """Failed tasks fail; anything downstream of a failure is skipped; the rest is done."""
    status: dict[int, TaskStatus] = {}
    for i in spec.ids:
        if any(status[d] is not TaskStatus.DONE for d in spec.deps[i - 1]):
            status[i] = TaskStatus.SKIPPED
        else:
            status[i] = TaskStatus.FAILED if spec.fails[i - 1] else TaskStatus.DONE
    return status


async def stream(tasks: list[Task], gaps: list[float]) -> AsyncIterator[Task]:
    """Send the tasks one by one, as a streaming planner would, with pauses between."""
    for i, task in enumerate(tasks):
        yield task
        await asyncio.sleep(gaps[i] if i < len(gaps) else 0)


async def run_checked(
    spec: Spec, rec: Recorder, gaps: list[float] | None = None, **options: Any
) -> llmc.Result:
    """Run the spec's plan (streamed when ``gaps`` are given); check nothing outlives it."""
    before = asyncio.all_tasks()
    tasks = build_tasks(spec)
    source = tasks if gaps is None else stream(tasks, gaps)
    async with asyncio.timeout(10):  # a hang guard, not a timing assertion
        result = await llmc.run_plan(source, **options)
    leftover = asyncio.all_tasks() - before
    assert not leftover, leftover
    return result


@SETTINGS
@given(specs(), st.none() | st.lists(st.sampled_from([0.0, 0.0005, 0.002]), max_size=12))
def test_random_dags_run_each_task_once_after_its_dependencies(
    spec: Spec, gaps: list[float] | None
) -> None:
    rec = Recorder()
    result = asyncio.run(
        run_checked(
            spec, rec, gaps, tools=build_tools(spec, rec), max_concurrency=spec.max_concurrency
        )
    )
    assert rec.problems == []
    expected = expected_statuses(spec)
    assert result.statuses == expected
    for i in spec.ids:
        ran = expected[i] is not TaskStatus.SKIPPED
        assert rec.runs[i] == (1 if ran else 0), (i, expected[i])
    assert set(result.outputs) == {i for i in spec.ids if expected[i] is TaskStatus.DONE}
    assert all(result.outputs[i] == i for i in result.outputs)
    if spec.max_concurrency is not None:
        assert rec.peak["*"] <= spec.max_concurrency
    for name, limit in spec.tool_limits.items():
        if limit is not None:
            assert rec.peak[name] <= limit
    for record in result.trace.tasks.values():
        assert record.status.is_final and record.finished is not None
        if record.status is TaskStatus.SKIPPED:
            assert isinstance(record.error, llmc.DependencyError)
            assert record.blocked_by is not None and spec.fails[record.blocked_by - 1]


@SETTINGS
@given(specs())
def test_fail_fast_starts_nothing_after_the_first_failure(spec: Spec) -> None:
    rec = Recorder()
    result = asyncio.run(
        run_checked(
            spec,
            rec,
            tools=build_tools(spec, rec),
            max_concurrency=spec.max_concurrency,
            fail_fast=True,
        )
    )
    assert rec.problems == []
    statuses = result.statuses
    assert TaskStatus.SKIPPED not in statuses.values()
    assert all(count == 1 for count in rec.runs.values())
    failed = [result.trace.tasks[i] for i, s in statuses.items() if s is TaskStatus.FAILED]
    if not any(spec.fails):
        assert set(statuses.values()) == {TaskStatus.DONE}
        return
    if not failed:  # every failing task was cancelled before it ran, or never ready
        return
    # Tasks already running may still fail while the run closes; nothing starts after.
    stop = min(record.finished for record in failed if record.finished is not None)
    assert all(start <= stop for start, _ in rec.starts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(max_tasks=8), st.integers(1, 3))
def test_rate_limits_are_never_exceeded(spec: Spec, rate: int) -> None:
    period = 0.01
    rec = Recorder()
    throttler = RecordingThrottler(rate_limit=rate, period=period, retry_interval=0.001)
    asyncio.run(run_checked(spec, rec, tools=build_tools(spec, rec, throttler)))
    # Every call was admitted by the limiter, and the admissions keep the rate. (Measured
    # on the limiter's own clock: a tool's own start can lag its admission on a busy machine.)
    assert len(throttler.admitted) == sum(rec.runs.values())
    for first, last in zip(throttler.admitted, throttler.admitted[rate:], strict=False):
        assert last - first > period


class RecordingThrottler(Throttler):
    """A Throttler that keeps the time of every admission, on its own clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.admitted: list[float] = []

    async def acquire(self) -> None:
        await super().acquire()
        self.admitted.append(self._task_logs[-1])
