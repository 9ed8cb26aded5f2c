"""The scheduler's ordinary path: tools, references, results, events, logs, threads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pydantic
import pytest
import structlog

import llmc
from llmc import Plan, Ref, Task, TaskStatus
from llmc.result import error_text, text_form
from llmc.scheduler import resolve_references


@llmc.tool
async def make() -> dict[str, Any]:
    """Return a small dict."""
    return {"a": [1, 2], "b": "x"}


@llmc.tool
async def show(value: Any) -> Any:
    """Return the value as received.

    Args:
        value: anything.
    """
    return value


@llmc.tool
async def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: first.
        b: second.
    """
    return a + b


# -- text form and references ----------------------------------------------------------------


class Point(pydantic.BaseModel):
    x: int
    y: int


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (42, "42"),
        (2.5, "2.5"),
        (None, "None"),
        (True, "True"),
        ({"city": "Zürich", "n": [1, 2]}, '{"city": "Zürich", "n": [1, 2]}'),
        ([1, "two"], '[1, "two"]'),
        ((1, 2), "[1, 2]"),
        (Point(x=1, y=2), '{"x":1,"y":2}'),
        (b"caf\xc3\xa9", "café"),
        ({(1, 2): "tuple key"}, "{(1, 2): 'tuple key'}"),
        (ValueError("bad"), "Error: ValueError: bad"),
    ],
)
def test_text_form(value: Any, text: str) -> None:
    assert text_form(value) == text


def test_text_form_writes_what_json_cannot_hold_with_str() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    assert text_form({"k": Thing()}) == '{"k": "a thing"}'


def test_error_text_without_message() -> None:
    assert error_text(TimeoutError()) == "Error: TimeoutError"


def test_resolve_references_nested() -> None:
    outputs = {1: {"a": 1}, 2: "two"}
    value = [Ref(1), {"k": Ref(2), Ref(2): ("$1", "${2}!", "$$3")}, {Ref(2)}]
    assert resolve_references(value, outputs) == [
        {"a": 1},
        {"k": "two", "two": ('{"a": 1}', "two!", "$3")},
        {"two"},
    ]


async def test_whole_argument_ref_gets_the_object_itself() -> None:
    plan = Plan(tools=[make, show])
    made = plan.add(make)
    plan.add(show, made)
    result = await llmc.run_plan(plan)
    assert result[2] is result[1]


async def test_string_placeholders_get_the_text_form() -> None:
    plan = Plan(tools=[make, show, add])
    made = plan.add(make)
    total = plan.add(add, 2, 3)
    plan.add(show, f"made {made}, total $2 / ${{2}}, price $$4")
    result = await llmc.run_plan(plan)
    assert result[3] == 'made {"a": [1, 2], "b": "x"}, total 5 / 5, price $4'
    assert total.task_id == 2


async def test_references_inside_containers_resolve_recursively() -> None:
    plan = Plan(tools=[make, show])
    made = plan.add(make)
    plan.add(show, {"items": [made, ("$1", 7)], "label": f"{made}"})
    result = await llmc.run_plan(plan)
    made_text = '{"a": [1, 2], "b": "x"}'
    assert result[2] == {"items": [result[1], (made_text, 7)], "label": made_text}


async def test_arguments_are_coerced_by_the_tool_schema() -> None:
    plan = Plan([Task(1, "add", ("2", 3.0))], tools=[add])
    result = await llmc.run_plan(plan)
    assert result[1] == 5


# -- tools and results -----------------------------------------------------------------------


def double(x: int) -> int:
    """Double a number.

    Args:
        x: the number.
    """
    return 2 * x


async def test_tools_may_be_plain_functions_or_a_toolbox() -> None:
    tasks = [Task(1, "double", (4,)), Task(2, "double", (Ref(1),))]
    by_list = await llmc.run_plan(tasks, tools=[double])
    by_box = await llmc.run_plan(tasks, tools=llmc.Toolbox([double]))
    assert by_list.outputs == by_box.outputs == {1: 8, 2: 16}


async def test_without_tools_the_plan_s_own_are_used() -> None:
    plan = Plan(tools=[double])
    plan.add("double", 21)
    assert (await llmc.run_plan(plan))[1] == 42


async def test_no_tools_at_all_is_a_plan_error() -> None:
    with pytest.raises(llmc.PlanError, match="no tools"):
        await llmc.run_plan([Task(1, "double", (1,))])


async def test_unknown_tool_in_a_plan_raises_before_anything_runs() -> None:
    calls: list[int] = []

    @llmc.tool
    async def record(x: int) -> int:
        """Record x.

        Args:
            x: a number.
        """
        calls.append(x)
        return x

    tasks = [Task(1, "record", (1,)), Task(2, "nope", ())]
    with pytest.raises(llmc.UnknownToolError, match="nope"):
        await llmc.run_plan(tasks, tools=[record])
    await asyncio.sleep(0.01)
    assert calls == []


async def test_result_views() -> None:
    @llmc.tool
    async def boom() -> None:
        """Fail."""
        raise ValueError("boom")

    plan = Plan(tools=[make, show, boom])
    plan.add(make)
    failed = plan.add(boom)
    plan.add(show, failed)
    result = await llmc.run_plan(plan)
    assert not result.ok
    assert result.statuses == {1: TaskStatus.DONE, 2: TaskStatus.FAILED, 3: TaskStatus.SKIPPED}
    assert result.status(2) is TaskStatus.FAILED
    assert list(result.errors) == [2]
    assert isinstance(result.skipped[3], llmc.DependencyError)
    assert result.observation(1) == '{"a": [1, 2], "b": "x"}'
    assert result.observation(2) == "Error: ValueError: boom"
    assert "task 2 (boom) failed" in result.observation(3)
    with pytest.raises(KeyError, match="task 2 has no output: it was failed"):
        result[2]
    with pytest.raises(KeyError, match="not part of this run"):
        result[9]
    assert "1 done, 1 failed, 1 skipped" in repr(result)


async def test_trace_records_times_in_order() -> None:
    @llmc.tool
    async def nap() -> None:
        """Sleep briefly."""
        await asyncio.sleep(0.01)

    plan = Plan(tools=[nap])
    plan.add(nap)
    plan.add(nap)
    result = await llmc.run_plan(plan)
    trace = result.trace
    assert trace.finished is not None and trace.makespan > 0
    for record in trace.tasks.values():
        assert record.status is TaskStatus.DONE
        assert record.attempts == 1
        assert record.queued <= record.ready <= record.started <= record.finished  # type: ignore[operator]
        assert record.duration is not None and record.duration >= 0.009
        assert record.wait is not None and record.wait >= 0
    assert set(trace.durations()) == {1, 2}


async def test_scheduler_object_is_reusable_and_rejects_bad_options() -> None:
    scheduler = llmc.Scheduler([double], max_concurrency=2)
    one = await scheduler.run([Task(1, "double", (1,))])
    two = await scheduler.run([Task(1, "double", (2,))], run_id="second")
    assert (one[1], two[1], two.run_id) == (2, 4, "second")
    assert one.run_id != two.run_id
    assert "double" in repr(scheduler)
    with pytest.raises(ValueError, match="max_concurrency"):
        llmc.Scheduler(max_concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        llmc.Scheduler(timeout=0)
    with pytest.raises(ValueError, match="exclude each other"):
        llmc.Scheduler(fail_fast=True, errors_as_observations=True)
    with pytest.raises(TypeError, match="unknown run option"):
        llmc.Scheduler(max_concurency=2)  # type: ignore[call-arg]


def test_run_plan_sync() -> None:
    result = llmc.run_plan_sync([Task(1, "double", (5,))], tools=[double])
    assert result[1] == 10


# -- events and logs -------------------------------------------------------------------------


async def test_events_come_in_order_with_their_content() -> None:
    @llmc.tool
    async def boom(x: int) -> int:
        """Fail.

        Args:
            x: ignored.
        """
        raise ValueError("boom")

    plan = Plan(tools=[add, boom])
    one = plan.add(add, 1, 2)
    two = plan.add(boom, one)
    plan.add(add, two, 1)
    events: list[llmc.Event] = []
    result = await llmc.run_plan(plan, on_event=events.append)

    kinds = [(type(e).__name__, getattr(e, "task_id", None)) for e in events]
    assert kinds == [
        ("RunStarted", None),
        ("TaskQueued", 1),
        ("TaskQueued", 2),
        ("TaskQueued", 3),
        ("TaskStarted", 1),
        ("TaskFinished", 1),
        ("TaskStarted", 2),
        ("TaskFailed", 2),
        ("TaskSkipped", 3),
        ("RunFinished", None),
    ]
    assert {e.run_id for e in events} == {result.run_id}
    times = [e.time for e in events]
    assert times == sorted(times)
    queued, finished, failed, skipped, done = (
        events[1],
        events[5],
        events[7],
        events[8],
        events[9],
    )
    assert isinstance(queued, llmc.TaskQueued) and queued.task == plan[1] and queued.tool == "add"
    assert isinstance(finished, llmc.TaskFinished) and finished.output == 3
    assert finished.duration >= 0
    assert isinstance(failed, llmc.TaskFailed) and isinstance(failed.error, ValueError)
    assert failed.attempts == 1
    assert isinstance(skipped, llmc.TaskSkipped)
    assert isinstance(skipped.reason, llmc.DependencyError)
    assert "task 2 (boom) failed: Error: ValueError: boom" in str(skipped.reason)
    assert isinstance(done, llmc.RunFinished) and done.result is result and done.error is None


async def test_stream_plan_yields_events_until_run_finished() -> None:
    plan = Plan(tools=[add])
    plan.add(add, plan.add(add, 1, 1), 1)
    seen = [event async for event in llmc.stream_plan(plan)]
    assert isinstance(seen[0], llmc.RunStarted)
    last = seen[-1]
    assert isinstance(last, llmc.RunFinished)
    assert last.result.outputs == {1: 2, 2: 3}


async def test_an_on_event_error_ends_the_run_and_is_raised() -> None:
    def picky(event: llmc.Event) -> None:
        if isinstance(event, llmc.TaskFinished):
            raise RuntimeError("observer broke")

    before = asyncio.all_tasks()
    plan = Plan(tools=[add])
    plan.add(add, plan.add(add, 1, 1), 1)
    with pytest.raises(RuntimeError, match="observer broke"):
        await llmc.run_plan(plan, on_event=picky)
    assert asyncio.all_tasks() == before


async def test_no_logs_until_the_application_configures_structlog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await llmc.run_plan([Task(1, "add", (1, 2))], tools=[add])
    assert capsys.readouterr().out == ""


async def test_logs_are_debug_lines_bound_to_run_and_task() -> None:
    plan = Plan(tools=[add])
    plan.add(add, plan.add(add, 1, 1), 1)
    with structlog.testing.capture_logs() as logs:
        result = await llmc.run_plan(plan)
    assert logs, "the scheduler logs at debug level"
    assert all(entry["log_level"] == "debug" for entry in logs)
    assert all(entry["run_id"] == result.run_id for entry in logs)
    per_task = [(entry["event"], entry["task_id"]) for entry in logs if "task_id" in entry]
    assert per_task == [
        ("task started", 1),
        ("task finished", 1),
        ("task started", 2),
        ("task finished", 2),
    ]
    assert logs[0]["event"] == "run started" and logs[-1]["event"] == "run finished"


# -- threads ---------------------------------------------------------------------------------


async def test_sync_tools_run_in_threads_without_blocking_the_loop() -> None:
    @llmc.tool
    def slow_sync(seconds: float) -> str:
        """Block a thread.

        Args:
            seconds: how long.
        """
        time.sleep(seconds)
        return "slept"

    @llmc.tool
    async def quick() -> str:
        """Return at once after a short async nap."""
        await asyncio.sleep(0.01)
        return "quick"

    tasks = [Task(1, "slow_sync", (0.3,)), Task(2, "slow_sync", (0.3,)), Task(3, "quick")]
    start = time.perf_counter()
    result = await llmc.run_plan(tasks, tools=[slow_sync, quick])
    elapsed = time.perf_counter() - start
    records = result.trace.tasks
    assert result.outputs == {1: "slept", 2: "slept", 3: "quick"}
    assert records[3].finished < records[1].finished  # type: ignore[operator]
    assert elapsed < 0.55, "the two sync calls ran in parallel threads"


async def test_sync_tools_see_context_variables() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @llmc.tool
    def read_var() -> str:
        """Read the context variable."""
        return var.get()

    var.set("from the caller")
    result = await llmc.run_plan([Task(1, "read_var")], tools=[read_var])
    assert result[1] == "from the caller"


# -- the executor seam -----------------------------------------------------------------------


class RecordingExecutor:
    """An executor that runs every call itself and remembers it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    async def call(self, tool: llmc.Tool, arguments: dict[str, Any]) -> Any:
        self.calls.append((tool.name, arguments))
        output = tool.fn(**arguments)
        return await output if tool.is_async else output

    def close(self) -> None:
        self.closed = True


async def test_tool_calls_go_through_a_given_executor_which_the_caller_keeps() -> None:
    from llmc.executors import Executor

    executor = RecordingExecutor()
    assert isinstance(executor, Executor)
    tasks = [Task(1, "add", (1, 2)), Task(2, "double", (Ref(1),))]
    result = await llmc.run_plan(tasks, tools=[add, double], executor=executor)
    assert result.outputs == {1: 3, 2: 6}
    assert executor.calls == [("add", {"a": 1, "b": 2}), ("double", {"x": 3})]
    assert not executor.closed


async def test_a_shared_asyncio_executor_serves_several_runs() -> None:
    from llmc.executors import AsyncioExecutor

    with AsyncioExecutor(max_workers=2) as executor:
        for n in (1, 2):
            result = await llmc.run_plan(
                [Task(1, "double", (n,))], tools=[double], executor=executor
            )
            assert result[1] == 2 * n
    with pytest.raises(RuntimeError, match="closed"):
        await executor.call(llmc.tool(double), {"x": 1})


def test_a_run_keeps_no_instance_dict() -> None:
    # The hot path reads the run's attributes for every task; past 30 attributes CPython
    # stops sharing instance-dict keys and every read slows down. Slots cannot grow silently.
    from llmc.scheduler import _Run

    assert "__dict__" not in vars(_Run)
