"""Fusion at dispatch: batchable tools go out as batches; identical calls run once."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from test_tool import CountingLimiter

import llmc
from llmc import Ref, Task, TaskStatus
from llmc.batching import call_key
from llmc.errors import RetryableToolError, ToolDefinitionError, ToolTimeoutError
from llmc.testing import EventRecorder


class Calls:
    """What batch and single functions received, in order."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.singles: list[Any] = []

    @property
    def items(self) -> Counter[Any]:
        return Counter(item for batch in self.batches for item in batch)


def doubler(calls: Calls, *, delay: float = 0.0, **options: Any) -> llmc.Tool:
    """A columnar batchable tool: doubles each x; a negative x fails its own item."""

    async def double(x: list[int]) -> list[Any]:
        calls.batches.append(list(x))
        await asyncio.sleep(delay)
        return [ValueError(f"negative {v}") if v < 0 else 2 * v for v in x]

    double.__doc__ = "Double numbers.\n\nArgs:\n    x: a number."
    options.setdefault("batch_window", 0.002)
    return llmc.tool(batch=True, **options)(double)


def tasks_of(tool: str, values: list[int], first: int = 1) -> list[Task]:
    return [Task(first + i, tool, (v,)) for i, v in enumerate(values)]


# -- batch=True: the columnar form -------------------------------------------------------------


def test_a_batchable_tool_shows_the_one_call_signature() -> None:
    tool = doubler(Calls())
    assert tool.signature_line() == "double(x: int) -> Any  # Double numbers."
    assert tool.parameters == ("x",) and tool.batch_tool is not None
    schema = tool.json_schema()["function"]["parameters"]
    assert schema["properties"]["x"]["type"] == "integer"


async def test_a_direct_call_is_a_batch_of_one() -> None:
    calls = Calls()
    tool = doubler(calls)
    assert await tool(21) == 42
    with pytest.raises(ValueError, match="negative"):
        await tool(-1)
    assert calls.batches == [[21], [-1]]


async def test_parallel_calls_go_out_as_one_batch() -> None:
    calls = Calls()
    tool = doubler(calls)
    result = await llmc.run_plan(tasks_of("double", list(range(10))), tools=[tool])
    assert result.ok
    assert result.outputs == {i + 1: 2 * i for i in range(10)}
    assert calls.batches == [list(range(10))]
    (call,) = result.trace.batches
    assert call.tool == "double" and call.task_ids == tuple(range(1, 11))
    assert call.attempts == 1 and call.error is None and call.duration is not None
    for record in result.trace.tasks.values():
        assert record.batch == 0 and record.attempts == 1
    assert result.trace.fused_groups() == {"batch 1: double": tuple(range(1, 11))}


async def test_a_per_item_error_fails_only_that_item() -> None:
    calls = Calls()
    tool = doubler(calls)
    tasks = [
        *tasks_of("double", [1, -2, 3]),
        Task(4, "echo", (Ref(2),)),
        Task(5, "echo", (Ref(3),)),
    ]
    result = await llmc.run_plan(tasks, tools=[tool, echo])
    assert result.statuses == {
        1: TaskStatus.DONE,
        2: TaskStatus.FAILED,
        3: TaskStatus.DONE,
        4: TaskStatus.SKIPPED,
        5: TaskStatus.DONE,
    }
    assert str(result.errors[2]) == "negative -2"
    assert result.outputs[5] == 6
    assert len(calls.batches) == 1


async def test_sync_batch_functions_run_in_threads() -> None:
    seen: list[list[str]] = []

    @llmc.tool(batch=True, batch_window=0.002)
    def shout(text: list[str]) -> list[str]:
        """Shout.

        Args:
            text: what to shout.
        """
        seen.append(list(text))
        return [t.upper() for t in text]

    result = await llmc.run_plan(tasks_of_text(["a", "b", "c"]), tools=[shout])
    assert result.outputs == {1: "A", 2: "B", 3: "C"} and seen == [["a", "b", "c"]]


def tasks_of_text(texts: list[str]) -> list[Task]:
    return [Task(i + 1, "shout", (t,)) for i, t in enumerate(texts)]


def test_batch_true_needs_list_parameters_and_a_list_result() -> None:
    with pytest.raises(ToolDefinitionError, match="'x' is not"):

        @llmc.tool(batch=True)
        def scalar(x: int) -> list[int]:
            return [x]

    with pytest.raises(ToolDefinitionError, match="without a default"):

        @llmc.tool(batch=True)
        def defaulted(x: list[int] = [1]) -> list[int]:  # noqa: B006
            return x

    with pytest.raises(ToolDefinitionError, match="returns a list"):

        @llmc.tool(batch=True)
        def single_result(x: list[int]) -> int:
            return 0

    with pytest.raises(ToolDefinitionError, match="max_batch"):
        doubler(Calls(), max_batch=0)


# -- batch=fn: a batch function registered for a one-call tool ------------------------------


async def test_a_registered_batch_function_gets_dicts_with_defaults_filled_in() -> None:
    received: list[list[dict[str, Any]]] = []

    async def search_many(calls: list[dict[str, Any]]) -> list[str]:
        received.append(calls)
        return [f"{c['query']}:{c['limit']}" for c in calls]

    @llmc.tool(batch=search_many, batch_window=0.002)
    async def search(query: str, limit: int = 3) -> str:
        """Search.

        Args:
            query: what to look for.
            limit: how many hits.
        """
        return f"single {query}"

    tasks = [Task(1, "search", ("a",)), Task(2, "search", ("b",), {"limit": 5})]
    result = await llmc.run_plan(tasks, tools=[search])
    assert result.outputs == {1: "a:3", 2: "b:5"}
    assert received == [[{"query": "a", "limit": 3}, {"query": "b", "limit": 5}]]
    assert search.signature_line().startswith("search(query: str, limit: int = 3) -> str")


# -- whole-batch failures ----------------------------------------------------------------------


def failing_tool(calls: Calls, *, fallback: bool, **options: Any) -> llmc.Tool:
    """A tool whose batch function always fails, with a working one-call form."""

    async def broken(calls_: list[dict[str, Any]]) -> list[int]:
        calls.batches.append([c["x"] for c in calls_])
        raise ConnectionError("batch endpoint down")

    async def single(x: int) -> int:
        """Triple a number; 13 is unlucky.

        Args:
            x: a number.
        """
        calls.singles.append(x)
        if x == 13:
            raise ValueError("unlucky")
        return 3 * x

    return llmc.tool(
        name="triple", batch=broken, batch_fallback=fallback, batch_window=0.002, **options
    )(single)


async def test_a_failed_batch_fails_every_member_without_fallback() -> None:
    calls = Calls()
    tool = failing_tool(calls, fallback=False)
    result = await llmc.run_plan(tasks_of("triple", [1, 2, 3]), tools=[tool])
    assert set(result.statuses.values()) == {TaskStatus.FAILED}
    assert all(isinstance(e, ConnectionError) for e in result.errors.values())
    (call,) = result.trace.batches
    assert isinstance(call.error, ConnectionError) and not call.fallback
    assert calls.singles == []


async def test_a_failed_batch_falls_back_to_one_call_per_item() -> None:
    calls = Calls()
    tool = failing_tool(calls, fallback=True)
    result = await llmc.run_plan(tasks_of("triple", [1, 13, 3]), tools=[tool])
    assert result.outputs == {1: 3, 3: 9}
    assert isinstance(result.errors[2], ValueError)  # its own call failed, alone
    assert sorted(calls.singles) == [1, 3, 13] and calls.batches == [[1, 13, 3]]
    (call,) = result.trace.batches
    assert call.fallback and isinstance(call.error, ConnectionError)
    assert result.trace.tasks[1].attempts == 2  # the batch, then its own call


async def test_a_batch_that_returns_the_wrong_number_of_outputs_fails_its_members() -> None:
    @llmc.tool(batch=True, batch_window=0.002)
    def short(x: list[int]) -> list[int]:
        """Forget the last output.

        Args:
            x: numbers.
        """
        return x[:-1]

    result = await llmc.run_plan(tasks_of("short", [1, 2]), tools=[short])
    assert set(result.statuses.values()) == {TaskStatus.FAILED}
    assert "returned 1 outputs for 2 calls" in str(result.errors[1])


# -- the window and the early flush ------------------------------------------------------------


async def test_calls_ready_within_the_window_share_a_batch_and_later_ones_do_not() -> None:
    calls = Calls()
    tool = doubler(calls, batch_window=0.03)

    async def stream() -> AsyncIterator[Task]:
        yield Task(1, "double", (1,))
        await asyncio.sleep(0.01)  # inside the first call's window
        yield Task(2, "double", (2,))
        await asyncio.sleep(0.1)  # well after it
        yield Task(3, "double", (3,))

    result = await llmc.run_plan(stream(), tools=[tool])
    assert result.ok and calls.batches == [[1, 2], [3]]
    first = result.trace.batches[0]
    record = result.trace.tasks[1]
    assert record.started is not None and first.started - record.started >= 0.025


async def test_a_full_batch_goes_out_at_once_without_waiting_for_the_window() -> None:
    calls = Calls()
    tool = doubler(calls, max_batch=4, batch_window=0.3)
    start = time.perf_counter()
    result = await llmc.run_plan(tasks_of("double", list(range(10))), tools=[tool])
    assert result.ok
    assert [len(b) for b in calls.batches] == [4, 4, 2]
    offsets = [call.started - start for call in result.trace.batches]
    assert offsets[0] < 0.1 and offsets[1] < 0.1, offsets  # full: sent at once
    assert offsets[2] >= 0.29, offsets  # the rest waited for the window


# -- limits, retries, timeouts -----------------------------------------------------------------


async def test_max_concurrency_counts_batches() -> None:
    running = Counter[str]()
    peak = 0

    @llmc.tool(batch=True, max_batch=2, max_concurrency=1, batch_window=0.001)
    async def slow(x: list[int]) -> list[int]:
        """Take a while.

        Args:
            x: numbers.
        """
        nonlocal peak
        running["now"] += 1
        peak = max(peak, running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return x

    result = await llmc.run_plan(tasks_of("slow", list(range(6))), tools=[slow])
    assert result.ok and peak == 1
    assert len(result.trace.batches) <= 4  # waiting batches grow while one runs
    assert sorted(i for c in result.trace.batches for i in c.task_ids) == list(range(1, 7))


async def test_the_rate_limit_is_taken_once_per_batch() -> None:
    limiter = CountingLimiter()
    calls = Calls()
    tool = doubler(calls, max_batch=5)
    tool.rate_limit = limiter
    result = await llmc.run_plan(tasks_of("double", list(range(10))), tools=[tool])
    assert result.ok and len(calls.batches) == 2 and limiter.acquired == 2


async def test_a_retryable_batch_error_retries_the_whole_batch() -> None:
    attempts = 0

    @llmc.tool(batch=True, retries=2, batch_window=0.001)
    async def flaky(x: list[int]) -> list[int]:
        """Fail once.

        Args:
            x: numbers.
        """
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RetryableToolError("busy")
        return x

    events = EventRecorder()
    result = await llmc.run_plan(
        tasks_of("flaky", [1, 2]),
        tools=[flaky],
        backoff=llmc.Backoff(base=0.001),
        on_event=events,
    )
    assert result.ok and attempts == 2
    (call,) = result.trace.batches
    assert call.attempts == 2 and result.trace.tasks[1].attempts == 2
    assert len(events.of_type(llmc.TaskRetrying)) == 2  # one per member


async def test_a_retryable_item_error_sends_that_item_again() -> None:
    batches: list[list[int]] = []

    @llmc.tool(batch=True, retries=1, batch_window=0.001)
    async def picky(x: list[int]) -> list[Any]:
        """Refuse 7 the first time.

        Args:
            x: numbers.
        """
        batches.append(list(x))
        first = len(batches) == 1
        return [RetryableToolError("later") if v == 7 and first else v for v in x]

    result = await llmc.run_plan(
        tasks_of("picky", [1, 7]), tools=[picky], backoff=llmc.Backoff(base=0.001)
    )
    assert result.outputs == {1: 1, 2: 7}
    assert batches == [[1, 7], [7]]
    assert result.trace.tasks[2].attempts == 2 and result.trace.tasks[2].batch == 1


async def test_the_timeout_applies_to_each_batch() -> None:
    calls = Calls()
    tool = doubler(calls, delay=1.0, timeout=0.05)
    start = time.perf_counter()
    result = await llmc.run_plan(tasks_of("double", [1, 2]), tools=[tool])
    assert time.perf_counter() - start < 0.5
    assert all(isinstance(e, ToolTimeoutError) for e in result.errors.values())
    assert len(result.errors) == 2


async def test_batches_have_events() -> None:
    events = EventRecorder()
    result = await llmc.run_plan(
        tasks_of("double", [1, 2]), tools=[doubler(Calls())], on_event=events
    )
    assert result.ok
    (started,) = events.of_type(llmc.BatchStarted)
    (finished,) = events.of_type(llmc.BatchFinished)
    assert started.task_ids == finished.task_ids == (1, 2) and finished.error is None
    kinds = events.types()
    assert kinds.index("BatchFinished") < kinds.index("TaskFinished")


# -- deduplication -----------------------------------------------------------------------------


def counting_tool(counts: Counter[Any], *, pure: bool = True, delay: float = 0.01) -> llmc.Tool:
    async def lookup(query: str) -> str:
        counts[query] += 1
        await asyncio.sleep(delay)
        return f"about {query}"

    lookup.__doc__ = "Look up.\n\nArgs:\n    query: a topic."
    return llmc.tool(pure=pure)(lookup)


@llmc.tool
def echo(value: Any) -> Any:
    """Return the value.

    Args:
        value: anything.
    """
    return value


async def test_identical_calls_of_a_pure_tool_run_once_and_both_tasks_get_the_output() -> None:
    counts: Counter[Any] = Counter()
    tool = counting_tool(counts)
    tasks = [
        Task(1, "lookup", ("x",)),
        Task(2, "lookup", (), {"query": "x"}),
        Task(3, "echo", (Ref(1),)),
        Task(4, "echo", (Ref(2),)),
    ]
    result = await llmc.run_plan(tasks, tools=[tool, echo])
    assert result.ok and counts == {"x": 1}
    assert result.outputs == {1: "about x", 2: "about x", 3: "about x", 4: "about x"}
    assert result.trace.tasks[2].served_by == 1 and result.trace.tasks[2].attempts == 0
    assert result.trace.tasks[1].served_by is None
    assert result.trace.fused_groups() == {"same call: lookup $1": (1, 2)}


async def test_calls_that_become_identical_once_references_resolve_run_once() -> None:
    counts: Counter[Any] = Counter()
    tool = counting_tool(counts)
    tasks = [
        Task(1, "echo", ("x",)),
        Task(2, "echo", ("x",)),
        Task(3, "lookup", (Ref(1),)),
        Task(4, "lookup", ("$2",)),
        Task(5, "lookup", ("y",)),
    ]
    result = await llmc.run_plan(tasks, tools=[tool, echo])
    assert result.ok and counts == {"x": 1, "y": 1}
    assert result.outputs[3] == result.outputs[4] == "about x"


async def test_a_call_identical_to_one_already_done_takes_its_output_at_once() -> None:
    counts: Counter[Any] = Counter()
    tool = counting_tool(counts, delay=0.0)
    tasks = [Task(1, "lookup", ("x",)), Task(2, "echo", (Ref(1),)), Task(3, "lookup", ("x",))]
    plan = llmc.Plan(tasks, tools=[tool, echo])
    result = await llmc.run_plan(plan)
    assert result.ok and counts == {"x": 1} and result.outputs[3] == "about x"


async def test_dedupe_can_be_turned_off_per_run_and_is_off_for_impure_tools() -> None:
    counts: Counter[Any] = Counter()
    tasks = [Task(1, "lookup", ("x",)), Task(2, "lookup", ("x",))]
    result = await llmc.run_plan(tasks, tools=[counting_tool(counts)], dedupe=False)
    assert result.ok and counts == {"x": 2}
    counts.clear()
    result = await llmc.run_plan(tasks, tools=[counting_tool(counts, pure=False)])
    assert result.ok and counts == {"x": 2}
    assert all(r.served_by is None for r in result.trace.tasks.values())


async def test_tools_are_not_pure_unless_they_say_so() -> None:
    assert not echo.pure
    assert counting_tool(Counter()).pure


async def test_a_served_task_fails_with_its_leaders_error() -> None:
    runs = 0

    @llmc.tool(pure=True)
    async def broken(query: str) -> str:
        """Fail.

        Args:
            query: ignored.
        """
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise ValueError("no")

    tasks = [Task(1, "broken", ("x",)), Task(2, "broken", ("x",))]
    result = await llmc.run_plan(tasks, tools=[broken])
    assert runs == 1
    assert result.statuses == {1: TaskStatus.FAILED, 2: TaskStatus.FAILED}
    assert result.errors[1] is result.errors[2]


async def test_identical_calls_in_one_window_fill_one_batch_item() -> None:
    calls = Calls()
    tool = doubler(calls, pure=True)
    result = await llmc.run_plan(tasks_of("double", [5, 5, 6, 5]), tools=[tool])
    assert result.outputs == {1: 10, 2: 10, 3: 12, 4: 10}
    assert calls.batches == [[5, 6]]


class Point(pydantic.BaseModel):
    x: int


class Opaque:
    pass


def test_call_keys_compare_values_and_types() -> None:
    assert call_key("f", {"a": 1, "b": [1, 2]}) == call_key("f", {"b": [1, 2], "a": 1})
    assert call_key("f", {"a": {"k": 1, "j": 2}}) == call_key("f", {"a": {"j": 2, "k": 1}})
    assert call_key("f", {"a": 1}) != call_key("f", {"a": True})
    assert call_key("f", {"a": 1}) != call_key("f", {"a": 1.0})
    assert call_key("f", {"a": [1]}) != call_key("f", {"a": (1,)})
    assert call_key("f", {"a": 1}) != call_key("g", {"a": 1})
    assert call_key("f", {"a": Point(x=1)}) == call_key("f", {"a": Point(x=1)})
    assert call_key("f", {"a": {1, 2}}) == call_key("f", {"a": {2, 1}})
    assert call_key("f", {"a": Opaque()}) is None
    assert call_key("f", {"a": [math.nan]}) is None


def test_a_registered_batch_function_takes_one_argument() -> None:
    def pairwise(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[int]:
        return []

    def single(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="one argument"):
        llmc.tool(batch=pairwise)(single)  # type: ignore[arg-type]


async def test_fail_fast_cancels_a_waiting_batch_and_a_running_batch() -> None:
    waiting, running = Calls(), Calls()
    patient = doubler(waiting, batch_window=5.0, name="patient")
    slow = doubler(running, delay=5.0, name="slow")

    @llmc.tool
    async def boom() -> None:
        """Fail soon."""
        await asyncio.sleep(0.02)
        raise RuntimeError("boom")

    tasks = [Task(1, "patient", (1,)), Task(2, "slow", (2,)), Task(3, "boom")]
    start = time.perf_counter()
    result = await llmc.run_plan(tasks, tools=[patient, slow, boom], fail_fast=True)
    assert time.perf_counter() - start < 1.0
    assert result.statuses == {
        1: TaskStatus.CANCELLED,
        2: TaskStatus.CANCELLED,
        3: TaskStatus.FAILED,
    }
    assert waiting.batches == [] and running.batches == [[2]]


async def test_cancelling_a_run_cancels_its_batches() -> None:
    calls = Calls()
    tool = doubler(calls, delay=5.0)
    run = asyncio.ensure_future(llmc.run_plan(tasks_of("double", [1, 2]), tools=[tool]))
    await asyncio.sleep(0.05)
    assert calls.batches == [[1, 2]]
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []
