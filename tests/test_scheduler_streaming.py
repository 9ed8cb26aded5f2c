"""Tasks that arrive while the run goes, as the streaming planner sends them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import llmc
from llmc import Ref, Task, TaskStatus


@llmc.tool
async def echo(value: Any = None, seconds: float = 0.0) -> Any:
    """Return the value after an optional nap.

    Args:
        value: anything.
        seconds: how long to nap first.
    """
    await asyncio.sleep(seconds)
    return value


@llmc.tool
async def boom() -> None:
    """Always fail."""
    raise ValueError("boom")


@llmc.tool
async def long(marker: Any) -> None:
    """Wait long; note a cancellation in ``marker``.

    Args:
        marker: a list to append "cancelled" to.
    """
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        marker.append("cancelled")
        raise


TOOLS = [echo, boom, long]


async def test_tasks_start_while_the_stream_is_still_open() -> None:
    last_sent = 0.0

    async def source() -> AsyncIterator[Task]:
        nonlocal last_sent
        yield Task(1, "echo", ("a", 0.01))
        await asyncio.sleep(0.05)
        yield Task(2, "echo", (Ref(1),))
        await asyncio.sleep(0.05)
        last_sent = time.perf_counter()
        yield Task(3, "echo", ("$2!",))

    result = await llmc.run_plan(source(), tools=TOOLS)
    assert result.outputs == {1: "a", 2: "a", 3: "a!"}
    records = result.trace.tasks
    assert records[1].finished < records[2].queued  # type: ignore[operator]
    assert records[2].finished < last_sent  # type: ignore[operator]


async def test_a_task_whose_dependencies_are_done_starts_on_arrival() -> None:
    async def source() -> AsyncIterator[Task]:
        yield Task(1, "echo", ("x",))
        await asyncio.sleep(0.05)
        yield Task(2, "echo", (Ref(1),))

    result = await llmc.run_plan(source(), tools=TOOLS)
    record = result.trace.tasks[2]
    assert record.ready == pytest.approx(record.queued, abs=0.005)
    assert record.started - record.queued < 0.2  # type: ignore[operator]
    assert result[2] == "x"


async def test_a_task_arriving_after_its_dependency_failed_is_skipped() -> None:
    async def source() -> AsyncIterator[Task]:
        yield Task(1, "boom")
        await asyncio.sleep(0.02)
        yield Task(2, "echo", (Ref(1),))
        yield Task(3, "echo", (Ref(2),))
        yield Task(4, "echo", ("fine",))

    result = await llmc.run_plan(source(), tools=TOOLS)
    assert result.statuses == {
        1: TaskStatus.FAILED,
        2: TaskStatus.SKIPPED,
        3: TaskStatus.SKIPPED,
        4: TaskStatus.DONE,
    }
    assert result.trace.tasks[3].blocked_by == 1


async def test_an_empty_stream_is_an_empty_result() -> None:
    async def source() -> AsyncIterator[Task]:
        return
        yield  # an async generator that yields nothing

    result = await llmc.run_plan(source(), tools=TOOLS)
    assert result.outputs == {} and result.ok


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (Task(3, "nope"), llmc.UnknownToolError, "unknown tool 'nope'"),
        (Task(1, "echo"), llmc.PlanError, "task 1 arrived twice"),
        (Task(3, "echo", (Ref(7),)), llmc.PlanError, r"refers to \$7, which has not arrived"),
        (Task(3, "echo", (1, 2, 3)), llmc.PlanError, "takes 2 argument"),
    ],
)
async def test_a_bad_arriving_task_cancels_the_run_and_raises(
    bad: Task, error: type[Exception], match: str
) -> None:
    marker: list[str] = []

    async def source() -> AsyncIterator[Task]:
        yield Task(1, "echo", ("a",))
        yield Task(2, "long", (marker,))
        await asyncio.sleep(0.02)
        yield bad
        yield Task(4, "echo", ("never",))

    before = asyncio.all_tasks()
    events: list[llmc.Event] = []
    with pytest.raises(error, match=match):
        await llmc.run_plan(source(), tools=TOOLS, on_event=events.append)
    assert marker == ["cancelled"]
    assert asyncio.all_tasks() == before
    finished = events[-1]
    assert isinstance(finished, llmc.RunFinished) and isinstance(finished.error, error)
    assert finished.result.statuses == {1: TaskStatus.DONE, 2: TaskStatus.CANCELLED}


async def test_an_error_from_the_stream_itself_is_raised_after_cancelling() -> None:
    marker: list[str] = []

    async def source() -> AsyncIterator[Task]:
        yield Task(1, "long", (marker,))
        await asyncio.sleep(0.01)
        raise ConnectionError("the planner's connection dropped")

    before = asyncio.all_tasks()
    with pytest.raises(ConnectionError, match="dropped"):
        await llmc.run_plan(source(), tools=TOOLS)
    assert marker == ["cancelled"]
    assert asyncio.all_tasks() == before


async def test_cancelling_the_run_closes_the_stream() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[Task]:
        try:
            yield Task(1, "echo", ("a",))
            await asyncio.sleep(10)
            yield Task(2, "echo", ("b",))
        finally:
            closed.set()

    before = asyncio.all_tasks()
    run = asyncio.create_task(llmc.run_plan(source(), tools=TOOLS))
    await asyncio.sleep(0.02)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert closed.is_set()
    assert asyncio.all_tasks() == before


async def test_a_plain_iterable_of_tasks_is_checked_the_same_way() -> None:
    with pytest.raises(llmc.PlanError, match="arrived twice"):
        await llmc.run_plan([Task(1, "echo"), Task(1, "echo")], tools=TOOLS)


async def test_a_stream_must_yield_tasks() -> None:
    async def source() -> AsyncIterator[Any]:
        yield "1. echo()"

    with pytest.raises(llmc.PlanError, match=r"must yield llmc\.Task objects, got '1\. echo"):
        await llmc.run_plan(source(), tools=TOOLS)


async def test_stream_plan_raises_after_the_events_before_a_bad_task() -> None:
    async def source() -> AsyncIterator[Task]:
        yield Task(1, "echo", ("a",))
        await asyncio.sleep(0.01)
        yield Task(2, "nope")

    seen: list[str] = []
    with pytest.raises(llmc.UnknownToolError):
        async for event in llmc.stream_plan(source(), tools=TOOLS):
            seen.append(type(event).__name__)
    assert seen[:4] == ["RunStarted", "TaskQueued", "TaskStarted", "TaskFinished"]
    assert seen[-1] == "RunFinished"
