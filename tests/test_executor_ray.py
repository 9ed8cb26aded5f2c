"""RayExecutor against a real local Ray cluster (2 CPUs, its own temp dir, shut down after)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")

import ray_tools  # noqa: E402  (a module of tests/, importable by the workers too)
from ray_tools import InputProblem  # noqa: E402

import llmc  # noqa: E402
from benchmarks.servers import ray_cluster  # noqa: E402
from llmc import Plan, Ref, TaskStatus  # noqa: E402
from llmc.executors.placement import Placement  # noqa: E402
from llmc.executors.ray import RayExecutor, RemoteOutput  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    with ray_cluster(2, [HERE.parent, HERE]), RayExecutor() as executor:
        yield executor


async def run(plan: Plan, executor: RayExecutor, **options: Any) -> llmc.Result:
    return await llmc.run_plan(plan, executor=executor, **options)


async def test_sync_async_and_local_tools_run_where_they_should(executor: RayExecutor) -> None:
    plan = Plan(
        tools=[ray_tools.square, ray_tools.where, ray_tools.where_async, ray_tools.where_local]
    )
    squared = plan.add("square", 7)
    plan.add("square", squared)  # a Ray task takes another's output
    remote = plan.add("where")
    remote_async = plan.add("where_async", 0.05)
    here = plan.add("where_local")
    result = await run(plan, executor)
    assert result.outputs[2] == 49**2
    assert result.outputs[here.task_id] == os.getpid()
    assert result.outputs[remote.task_id] != os.getpid()
    assert result.outputs[remote_async.task_id] != os.getpid()


async def test_placed_only_runs_other_tools_here(executor: RayExecutor) -> None:
    placed = llmc.tool(name="where_placed", placement={"num_cpus": 1})(ray_tools.where.fn)
    mixed = RayExecutor(placed_only=True)  # shares the running connection
    try:
        plan = Plan(tools=[ray_tools.where, placed])
        plan.add("where")
        plan.add("where_placed")
        result = await run(plan, mixed)
    finally:
        mixed.close()
    assert result.outputs[1] == os.getpid()
    assert result.outputs[2] != os.getpid()
    assert ray.is_initialized()  # closing an executor that did not connect keeps Ray up


async def test_a_stateful_tool_keeps_its_state_on_one_actor(executor: RayExecutor) -> None:
    plan = Plan(tools=[ray_tools.count])
    for _ in range(4):
        plan.add("count")
    first = await run(plan, executor)
    second = await run(plan, executor)
    counts = sorted(first.outputs[i][0] for i in range(1, 5))
    assert counts == [1, 2, 3, 4]
    assert sorted(second.outputs[i][0] for i in range(1, 5)) == [5, 6, 7, 8]
    pids = {out[1] for res in (first, second) for out in res.outputs.values()}
    assert len(pids) == 1 and os.getpid() not in pids


async def test_an_error_keeps_its_type_and_message(executor: RayExecutor) -> None:
    plan = Plan(tools=[ray_tools.refuse, ray_tools.square])
    failed = plan.add("refuse", "no reason")
    plan.add("square", 3)
    result = await run(plan, executor)
    error = result.trace.tasks[failed.task_id].error
    assert type(error) is InputProblem
    assert str(error) == "cannot do it: no reason"
    assert any("Ray worker" in note for note in getattr(error, "__notes__", []))
    assert result.outputs[2] == 9


async def test_a_timeout_cancels_the_ray_task(executor: RayExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "linger"
    plan = Plan(tools=[ray_tools.linger])
    plan.add("linger", str(marker))
    started = time.time()
    result = await run(plan, executor)
    record = result.trace.tasks[1]
    assert isinstance(record.error, llmc.ToolTimeoutError)
    stopped = Path(f"{marker}.stopped")
    while not stopped.exists() and time.time() - started < 20:  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.1)
    # The tool would run 30 s; it stopped because Ray interrupted it.
    assert stopped.exists(), "the Ray task went on after the timeout"  # noqa: ASYNC240
    assert float(stopped.read_text()) - started < 20  # noqa: ASYNC240


async def test_a_killed_worker_is_retried(executor: RayExecutor, tmp_path: Path) -> None:
    plan = Plan(tools=[ray_tools.die_once])
    plan.add("die_once", str(tmp_path / "first"))
    result = await run(plan, executor, backoff=llmc.Backoff(base=0.05))
    record = result.trace.tasks[1]
    assert record.status is TaskStatus.DONE, record.error
    assert record.attempts == 2
    assert (tmp_path / "first").read_text() == "killed"


async def test_a_killed_worker_without_retries_fails_clearly(
    executor: RayExecutor, tmp_path: Path
) -> None:
    once = llmc.tool(name="die_no_retry")(ray_tools.die_once.fn)
    plan = Plan(tools=[once])
    plan.add("die_no_retry", str(tmp_path / "first"))
    result = await run(plan, executor)
    error = result.trace.tasks[1].error
    assert isinstance(error, llmc.WorkerLostError)
    assert "retries" in str(error)


async def test_large_outputs_stay_in_the_object_store_until_the_end(
    executor: RayExecutor,
) -> None:
    size = 3_000_000
    plan = Plan(tools=[ray_tools.blob, ray_tools.length, ray_tools.length_local])
    big = plan.add("blob", size)
    plan.add("length", big)  # on Ray: reads the object store
    plan.add("length_local", Ref(big.task_id))  # here: fetched for the local tool
    seen: dict[int, Any] = {}

    def watch(event: llmc.Event) -> None:
        if isinstance(event, llmc.TaskFinished):
            seen[event.task_id] = event.output

    result = await run(plan, executor, on_event=watch)
    assert isinstance(seen[1], RemoteOutput) and seen[1].size == size
    assert "3,000,000 bytes" in repr(seen[1])
    assert result.outputs[2] == size and result.outputs[3] == size
    assert result.outputs[1] == b"x" * size  # settled: the result holds the value


def test_placement_is_checked() -> None:
    with pytest.raises(llmc.ToolDefinitionError, match="unknown key"):
        llmc.tool(placement={"gpus": 1})(ray_tools.square.fn)
    with pytest.raises(llmc.ToolDefinitionError, match="0 or more"):
        Placement(num_cpus=-1)
    with pytest.raises(llmc.ToolDefinitionError, match="not both"):
        Placement(actor=True, local=True)
    assert Placement.of({"num_gpus": 0.5, "resources": {"db": 1}}) == Placement(
        num_gpus=0.5, resources={"db": 1}
    )


async def test_a_call_holding_a_handle_is_validated_on_the_worker(executor: RayExecutor) -> None:
    wants_int = llmc.tool(name="square_big")(ray_tools.square.fn)
    plan = Plan(tools=[ray_tools.blob, wants_int])
    big = plan.add("blob", 2_000_000)
    plan.add("square_big", big)  # bytes where an int is expected
    result = await run(plan, executor)
    error = result.trace.tasks[2].error
    assert isinstance(error, llmc.ToolArgumentError)
    assert "x" in str(error)


async def test_a_ray_pool_answers_fifty_questions(executor: RayExecutor) -> None:
    from sim_tools import WORLD, simulated_compiler

    from benchmarks.sim import Policy, Simulator
    from benchmarks.sim.profiles import PROFILES
    from benchmarks.sim.workloads import synthetic
    from llmc.mapping import BatchSummary
    from llmc.ray_pool import RayPool

    workload = synthetic("fanout", 50)
    questions = [q.text for q in workload.questions]
    with (
        Simulator(Policy(list(workload.questions), WORLD), PROFILES["instant"]) as sim,
        RayPool(functools.partial(simulated_compiler, sim.base_url()), size=2, num_cpus=0) as pool,
    ):
        outcomes = [o async for o in pool.map(questions, concurrency=10)]
    assert sorted(o.index for o in outcomes) == list(range(50))
    for outcome in outcomes:
        assert outcome.ok, outcome.error
        assert workload.questions[outcome.index].answer in outcome.text
        assert outcome.answer is None and outcome.tokens > 0  # figures only, across the wire
    summary = BatchSummary.of(outcomes, 1.0)
    assert summary.answers == 50 and summary.p95 >= summary.p50 > 0
