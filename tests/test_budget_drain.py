"""When a tool-call budget trips, calls already made finish and keep their outputs."""

from __future__ import annotations

import asyncio

import pytest

import llmc
from llmc import Budget, BudgetExceeded
from llmc.trace import TaskStatus

STARTED: list[int] = []


@llmc.tool
async def slow(x: int) -> int:
    """Take a while, then double.

    Args:
        x: a number.
    """
    STARTED.append(x)
    await asyncio.sleep(0.2)
    return 2 * x


def parallel(count: int) -> llmc.Plan:
    plan = llmc.Plan()
    for i in range(count):
        plan.add("slow", i)
    return plan


@pytest.mark.parametrize("limit", [1, 3, 5, 7])
async def test_paid_calls_finish_and_their_outputs_are_kept(limit: int) -> None:
    STARTED.clear()
    with pytest.raises(BudgetExceeded) as caught:
        await llmc.run_plan(parallel(8), tools=[slow], budget=Budget(max_tool_calls=limit))
    result = caught.value.result
    assert len(STARTED) == limit  # no call past the budget was made
    assert result.outputs == {i + 1: 2 * x for i, x in enumerate(range(8)) if x in STARTED}
    statuses = list(result.statuses.values())
    assert statuses.count(TaskStatus.DONE) == limit
    assert statuses.count(TaskStatus.FAILED) == 1  # the call refused: BudgetExceeded
    assert statuses.count(TaskStatus.CANCELLED) == 8 - limit - 1  # not called at all


async def test_dependents_of_paid_calls_do_not_start_once_the_budget_is_spent() -> None:
    STARTED.clear()
    plan = parallel(3)
    plan.add("slow", llmc.Ref(1))
    with pytest.raises(BudgetExceeded) as caught:
        await llmc.run_plan(plan, tools=[slow], budget=Budget(max_tool_calls=2))
    result = caught.value.result
    assert len(result.outputs) == 2 and result.status(4) is TaskStatus.CANCELLED


async def test_a_cancelled_run_still_cancels_calls_in_flight() -> None:
    STARTED.clear()
    run = asyncio.create_task(
        llmc.run_plan(parallel(8), tools=[slow], budget=Budget(max_tool_calls=5))
    )
    await asyncio.sleep(0.05)  # the budget has tripped; five calls are draining
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, timeout=0.1)  # (it would take 0.15 s more to drain)
