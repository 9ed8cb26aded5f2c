"""A later plan refers to an earlier plan's outputs and records into the same trace."""

from __future__ import annotations

import pytest

import llmc
from llmc import Plan, Ref, Scheduler, Task
from llmc.trace import Trace


@llmc.tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


async def test_prior_outputs_feed_references_and_stay_out_of_the_result() -> None:
    scheduler = Scheduler([echo])
    first = await scheduler.run(Plan.parse('1. echo("a")\n2. echo("b")\n', tools=[echo]))
    trace = first.trace
    second = await scheduler.run(
        [Task(3, "echo", ("$1+${2}",)), Task(4, "echo", (Ref(3),))],
        prior=first.outputs,
        trace=trace,
    )
    assert second.outputs == {3: "a+b", 4: "a+b"}
    assert second.trace is trace and sorted(trace.tasks) == [1, 2, 3, 4]


async def test_a_new_task_may_not_reuse_an_earlier_id() -> None:
    with pytest.raises(llmc.PlanError, match="ran in an earlier plan"):
        await Scheduler([echo]).run([Task(1, "echo", ("x",))], prior={1: "old"})


async def test_run_level_on_event_adds_to_the_schedulers_own() -> None:
    seen_by_scheduler: list[object] = []
    seen_by_run: list[object] = []
    scheduler = Scheduler([echo], on_event=seen_by_scheduler.append)
    await scheduler.run(
        [Task(1, "echo", ("x",))], on_event=seen_by_run.append, trace=Trace("r", 0.0)
    )
    assert seen_by_scheduler == seen_by_run and len(seen_by_run) >= 4
