"""Failures, timeouts, retries, fail-fast, errors as observations, and cancellation."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import llmc
from llmc import Backoff, Ref, Task, TaskStatus

FAST = Backoff(base=0.001, max_delay=0.01)


@llmc.tool
async def ok(value: Any = None) -> Any:
    """Return the value.

    Args:
        value: anything.
    """
    return value


@llmc.tool
async def boom(value: Any = None) -> Any:
    """Always fail.

    Args:
        value: ignored.
    """
    raise ValueError("boom")


@llmc.tool
async def nap(seconds: float, value: Any = None) -> Any:
    """Sleep, then return the value.

    Args:
        seconds: how long.
        value: anything.
    """
    await asyncio.sleep(seconds)
    return value


TOOLS = [ok, boom, nap]


def sleeper(cancelled: list[int], started: asyncio.Event | None = None) -> llmc.Tool:
    """A tool ``long(task)`` that sleeps 10 s: it sets ``started`` once it runs, and notes
    ``task`` in ``cancelled`` when it is cancelled."""

    @llmc.tool
    async def long(task: int) -> None:
        """Sleep long, noting cancellation.

        Args:
            task: its id.
        """
        if started is not None:
            started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(task)
            raise

    return long


# -- failures stay local ---------------------------------------------------------------------


async def test_dependents_of_a_failed_task_are_skipped_and_the_rest_runs() -> None:
    tasks = [
        Task(1, "boom"),
        Task(2, "ok", (Ref(1),)),
        Task(3, "ok", (Ref(2),)),  # skipped through 2
        Task(4, "ok", ("independent",)),
        Task(5, "ok", ([Ref(4), Ref(3)],)),  # one dependency fine, one skipped
        Task(6, "ok", (Ref(4),)),
    ]
    result = await llmc.run_plan(tasks, tools=TOOLS)
    assert result.statuses == {
        1: TaskStatus.FAILED,
        2: TaskStatus.SKIPPED,
        3: TaskStatus.SKIPPED,
        4: TaskStatus.DONE,
        5: TaskStatus.SKIPPED,
        6: TaskStatus.DONE,
    }
    records = result.trace.tasks
    assert "task 1 (boom) failed" in str(records[2].error)
    assert "task 2 (ok) was skipped because task 1 failed" in str(records[3].error)
    assert records[3].blocked_by == records[5].blocked_by == 1
    assert records[2].attempts == 0 and records[2].started is None


async def test_a_tool_argument_error_fails_only_that_task() -> None:
    calls: list[int] = []

    @llmc.tool
    async def double(x: int) -> int:
        """Double.

        Args:
            x: a number.
        """
        calls.append(x)
        return 2 * x

    tasks = [
        Task(1, "ok", ("not a number",)),
        Task(2, "double", (Ref(1),)),
        Task(3, "double", (Ref(2),)),
        Task(4, "double", (21,)),
    ]
    result = await llmc.run_plan(tasks, tools=[ok, double])
    assert result.status(2) is TaskStatus.FAILED
    error = result.errors[2]
    assert isinstance(error, llmc.ToolArgumentError) and error.parameter == "x"
    assert result.trace.tasks[2].attempts == 0, "the tool was not called"
    assert result.status(3) is TaskStatus.SKIPPED
    assert result[4] == 42
    assert calls == [21]


async def test_errors_as_observations_reach_dependents() -> None:
    tasks = [
        Task(1, "boom"),
        Task(2, "ok", ("saw: $1",)),
        Task(3, "ok", (Ref(1),)),
        Task(4, "ok", ("$3 again",)),
    ]
    result = await llmc.run_plan(tasks, tools=TOOLS, errors_as_observations=True)
    assert result.status(1) is TaskStatus.FAILED
    assert 1 not in result.outputs
    assert result[2] == "saw: Error: ValueError: boom"
    assert result[3] == "Error: ValueError: boom"
    assert result[4] == "Error: ValueError: boom again"
    assert result.observation(1) == "Error: ValueError: boom"


async def test_errors_as_observations_for_a_task_arriving_after_the_failure() -> None:
    async def source() -> Any:
        yield Task(1, "boom")
        await asyncio.sleep(0.02)
        yield Task(2, "ok", ("saw: $1",))

    result = await llmc.run_plan(source(), tools=TOOLS, errors_as_observations=True)
    assert result[2] == "saw: Error: ValueError: boom"


async def test_fail_fast_cancels_everything_else() -> None:
    cancelled: list[int] = []
    long = sleeper(cancelled)

    @llmc.tool
    async def late_boom() -> None:
        """Fail after a moment."""
        await asyncio.sleep(0.02)
        raise ValueError("boom")

    tasks = [
        Task(1, "long", (1,)),
        Task(2, "late_boom"),
        Task(3, "long", (3,)),
        Task(4, "ok", (Ref(1),)),
    ]
    before = asyncio.all_tasks()
    events: list[llmc.Event] = []
    async with asyncio.timeout(5):
        result = await llmc.run_plan(
            tasks, tools=[long, late_boom, ok], fail_fast=True, on_event=events.append
        )
    assert result.statuses == {
        1: TaskStatus.CANCELLED,
        2: TaskStatus.FAILED,
        3: TaskStatus.CANCELLED,
        4: TaskStatus.CANCELLED,
    }
    assert sorted(cancelled) == [1, 3]
    assert asyncio.all_tasks() == before
    cancelled_events = {e.task_id for e in events if isinstance(e, llmc.TaskCancelled)}
    assert cancelled_events == {1, 3, 4}
    assert isinstance(events[-1], llmc.RunFinished) and events[-1].error is None


async def test_fail_fast_stops_reading_a_stream() -> None:
    closed = asyncio.Event()

    async def source() -> Any:
        try:
            yield Task(1, "boom")
            await asyncio.sleep(10)
            yield Task(2, "ok")
        finally:
            closed.set()

    async with asyncio.timeout(5):
        result = await llmc.run_plan(source(), tools=TOOLS, fail_fast=True)
    assert result.statuses == {1: TaskStatus.FAILED}
    assert closed.is_set()


# -- timeouts and retries --------------------------------------------------------------------


async def test_tool_timeout_fails_the_task_with_tool_timeout_error() -> None:
    quick_out = llmc.tool(timeout=0.05, name="quick_out")(nap.fn)
    result = await llmc.run_plan(
        [Task(1, "quick_out", (10,)), Task(2, "nap", (0.01, "fine"))], tools=[quick_out, nap]
    )
    error = result.errors[1]
    assert isinstance(error, llmc.ToolTimeoutError) and isinstance(error, TimeoutError)
    assert "timeout of 0.05 s" in str(error)
    assert result.trace.tasks[1].duration < 1  # type: ignore[operator]
    assert result[2] == "fine"


async def test_run_wide_timeout_applies_to_tools_without_their_own() -> None:
    patient = llmc.tool(timeout=5, name="patient")(nap.fn)
    tasks = [Task(1, "nap", (10,)), Task(2, "patient", (0.1, "waited"))]
    result = await llmc.run_plan(tasks, tools=[nap, patient], timeout=0.05)
    assert isinstance(result.errors[1], llmc.ToolTimeoutError)
    assert result[2] == "waited"


async def test_a_tool_s_own_timeout_error_is_not_relabelled() -> None:
    @llmc.tool(timeout=5)
    async def own_timeout() -> None:
        """Raise TimeoutError itself."""
        raise TimeoutError("upstream timed out")

    result = await llmc.run_plan([Task(1, "own_timeout")], tools=[own_timeout])
    error = result.errors[1]
    assert type(error) is TimeoutError and str(error) == "upstream timed out"


async def test_retries_with_backoff_until_success() -> None:
    attempts: list[float] = []

    @llmc.tool(retries=3)
    async def flaky() -> str:
        """Fail twice, then succeed."""
        attempts.append(time.perf_counter())
        if len(attempts) < 3:
            raise llmc.RetryableToolError("try again")
        return "finally"

    events: list[llmc.Event] = []
    backoff = Backoff(base=0.02, factor=2, jitter=0)
    result = await llmc.run_plan(
        [Task(1, "flaky")], tools=[flaky], backoff=backoff, on_event=events.append
    )
    assert result[1] == "finally"
    assert result.trace.tasks[1].attempts == 3
    retries = [e for e in events if isinstance(e, llmc.TaskRetrying)]
    assert [(e.attempt, e.delay) for e in retries] == [(1, 0.02), (2, 0.04)]
    assert all(isinstance(e.error, llmc.RetryableToolError) for e in retries)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.019 and gaps[1] >= 0.039


async def test_retries_give_up_after_the_last_attempt() -> None:
    count = 0

    @llmc.tool(retries=2, timeout=0.02)
    async def always_slow() -> None:
        """Time out every time."""
        nonlocal count
        count += 1
        await asyncio.sleep(1)

    result = await llmc.run_plan([Task(1, "always_slow")], tools=[always_slow], backoff=FAST)
    assert count == 3 and result.trace.tasks[1].attempts == 3
    assert isinstance(result.errors[1], llmc.ToolTimeoutError)


async def test_errors_outside_retry_on_are_not_retried() -> None:
    count = 0

    @llmc.tool(retries=5, retry_on=(ConnectionError,))
    async def wrong() -> None:
        """Fail with a non-retryable error."""
        nonlocal count
        count += 1
        raise ValueError("not transient")

    result = await llmc.run_plan([Task(1, "wrong")], tools=[wrong], backoff=FAST)
    assert count == 1 and isinstance(result.errors[1], ValueError)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    backoff = Backoff(base=0.1, factor=2, max_delay=0.5, jitter=0.5)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        for _ in range(20):
            assert full / 2 <= backoff.delay(attempt) <= full
    assert Backoff(base=1, jitter=0).delay(3) == 4
    with pytest.raises(ValueError):
        Backoff(jitter=2)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_the_run_cancels_every_task_and_leaves_none_behind() -> None:
    started = asyncio.Event()
    cancelled: list[int] = []
    long = sleeper(cancelled, started)

    @llmc.tool
    def blocking(seconds: float) -> None:
        """Block a worker thread.

        Args:
            seconds: how long.
        """
        time.sleep(seconds)

    tasks = [
        Task(1, "long", (1,)),
        Task(2, "long", (2,)),
        Task(3, "long", (Ref(1),)),
        Task(4, "blocking", (1.5,)),
    ]
    events: list[llmc.Event] = []
    before = asyncio.all_tasks()
    run = asyncio.create_task(llmc.run_plan(tasks, tools=[long, blocking], on_event=events.append))
    await started.wait()
    run.cancel()
    start = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.perf_counter() - start < 1.0, "did not wait for the blocking sync tool"
    assert sorted(cancelled) == [1, 2]
    assert asyncio.all_tasks() == before
    assert {e.task_id for e in events if isinstance(e, llmc.TaskCancelled)} == {1, 2, 3, 4}
    assert not any(isinstance(e, llmc.RunFinished) for e in events)


async def test_leaving_a_stream_early_cancels_the_run() -> None:
    from contextlib import aclosing

    before = asyncio.all_tasks()
    tasks = [Task(1, "nap", (10,)), Task(2, "nap", (10,))]
    async with aclosing(llmc.stream_plan(tasks, tools=TOOLS)) as events:
        async for event in events:
            if isinstance(event, llmc.TaskStarted):
                break
    assert asyncio.all_tasks() == before


async def test_a_tool_raising_cancelled_error_on_its_own_fails_its_task() -> None:
    @llmc.tool
    async def confused() -> None:
        """Raise CancelledError without being cancelled."""
        raise asyncio.CancelledError

    async with asyncio.timeout(5):
        result = await llmc.run_plan(
            [Task(1, "confused"), Task(2, "ok", (Ref(1),))], tools=[confused, ok]
        )
    assert result.statuses == {1: TaskStatus.FAILED, 2: TaskStatus.SKIPPED}


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    import structlog
    import llmc

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

    @llmc.tool
    async def wait(n: int) -> None:
        \"\"\"Wait long.\"\"\"
        print("started", n, flush=True)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            print("cancelled", n, flush=True)
            raise

    @llmc.tool
    def blocking() -> None:
        \"\"\"Block a thread for a moment.\"\"\"
        time.sleep(0.3)

    plan = llmc.Plan(tools=[wait, blocking])
    first = plan.add(wait, 1)
    plan.add(wait, 2)
    plan.add(blocking)
    plan.add(wait, first)
    try:
        llmc.run_plan_sync(plan)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("finished normally", flush=True)
    """
)


def test_ctrl_c_during_run_plan_sync_stops_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline(), process.stdout.readline()]
        assert sorted(line.strip() for line in seen) == ["started 1", "started 2"]
        start = time.perf_counter()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        elapsed = time.perf_counter() - start
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 3, err
    lines = out.split()
    assert "interrupted" in out and "finished normally" not in out
    assert out.count("cancelled") == 2 and lines.count("1") == 1
    assert elapsed < 5
