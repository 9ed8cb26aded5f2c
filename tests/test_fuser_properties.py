"""Property tests of fusion (hypothesis): fusion never changes what a plan computes.

Random plans over deterministic tools run twice, fused and unfused: at dispatch (batches and
deduplication on, then off) every task ends the same way with the same output, dependencies
hold, no call is lost and none runs twice; at plan time, expanding fused calls gives the
outputs of the hand-written plan of their members.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmc
from llmc import Plan, Ref, Task, TaskStatus
from llmc.fuser import Fuser, fuse

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RAN = (TaskStatus.DONE, TaskStatus.FAILED)

# -- fusion at dispatch ------------------------------------------------------------------------


@dataclass
class Spec:
    """Per task: its tool, its small argument, and the earlier tasks it takes outputs of."""

    tools: list[str]
    xs: list[int]
    deps: list[list[int]]
    max_batch: int
    max_concurrency: int | None


@st.composite
def specs(draw: st.DrawFn, max_tasks: int = 12) -> Spec:
    n = draw(st.integers(1, max_tasks))
    return Spec(
        tools=[draw(st.sampled_from("fgh")) for _ in range(n)],
        xs=[draw(st.integers(0, 3)) for _ in range(n)],  # small: identical calls happen
        deps=[
            sorted(draw(st.lists(st.integers(1, i - 1), max_size=2, unique=True))) if i > 1 else []
            for i in range(1, n + 1)
        ],
        max_batch=draw(st.integers(1, 4)),
        max_concurrency=draw(st.none() | st.integers(1, 3)),
    )


def compute(tool: str, x: int, deps: list[int]) -> int:
    """What each tool returns; ``f`` fails on 3."""
    if tool == "f" and x == 3:
        raise ValueError("f fails on 3")
    weight = {"f": 3, "g": 2, "h": 1}[tool]
    return weight * x + sum(deps) % 97 + 1


def dispatch_tools(spec: Spec, runs: Counter[tuple[Any, ...]], fused: bool) -> list[llmc.Tool]:
    """f: batchable and pure; g: pure; h: impure. Unfused, f is a plain one-call tool."""

    async def f_batch(x: list[int], deps: list[list[int]]) -> list[Any]:
        await asyncio.sleep(0.001)
        out: list[Any] = []
        for xi, di in zip(x, deps, strict=True):
            runs["f", xi, tuple(di)] += 1
            try:
                out.append(compute("f", xi, di))
            except ValueError as exc:
                out.append(exc)
        return out

    async def f_single(x: int, deps: list[int]) -> int:
        runs["f", x, tuple(deps)] += 1
        await asyncio.sleep(0.001)
        return compute("f", x, deps)

    async def g(x: int, deps: list[int]) -> int:
        runs["g", x, tuple(deps)] += 1
        await asyncio.sleep(0.001)
        return compute("g", x, deps)

    def h(x: int, deps: list[int]) -> int:
        runs["h", x, tuple(deps)] += 1
        return compute("h", x, deps)

    doc = "A tool.\n\nArgs:\n    x: a number.\n    deps: outputs of earlier tasks."
    for fn in (f_batch, f_single, g, h):
        fn.__doc__ = doc
    if fused:
        f = llmc.tool(
            name="f", batch=True, pure=True, max_batch=spec.max_batch, batch_window=0.001
        )(f_batch)
    else:
        f = llmc.tool(name="f")(f_single)
    return [f, llmc.tool(pure=True)(g), llmc.tool(h)]


def dispatch_plan(spec: Spec) -> list[Task]:
    return [
        Task(i, tool, (x, [Ref(d) for d in deps]))
        for i, (tool, x, deps) in enumerate(zip(spec.tools, spec.xs, spec.deps, strict=True), 1)
    ]


def run_dispatch(spec: Spec, fused: bool) -> tuple[llmc.Result, Counter[tuple[Any, ...]]]:
    runs: Counter[tuple[Any, ...]] = Counter()
    tools = dispatch_tools(spec, runs, fused)
    result = asyncio.run(
        llmc.run_plan(
            dispatch_plan(spec),
            tools=tools,
            dedupe=fused,
            max_concurrency=spec.max_concurrency,
        )
    )
    return result, runs


@SETTINGS
@given(specs())
def test_fusion_at_dispatch_changes_no_output_and_loses_or_repeats_no_call(spec: Spec) -> None:
    fused, fused_runs = run_dispatch(spec, fused=True)
    plain, plain_runs = run_dispatch(spec, fused=False)
    assert fused.statuses == plain.statuses
    assert fused.outputs == plain.outputs

    # The calls each task made, from its inputs: every task that ran, exactly once unfused.
    calls: Counter[tuple[Any, ...]] = Counter()
    for i, (tool, x, deps) in enumerate(zip(spec.tools, spec.xs, spec.deps, strict=True), 1):
        if plain.status(i) in RAN:
            calls[tool, x, tuple(plain.outputs[d] for d in deps)] += 1
    assert plain_runs == calls
    # Fused: each distinct call of a pure tool once; the impure tool's calls all run.
    assert set(fused_runs) == set(calls)
    for key, count in fused_runs.items():
        assert count == (calls[key] if key[0] == "h" else 1), key

    # Dependencies held, and each batch member has its own record in its batch.
    trace = fused.trace
    for i, deps in enumerate(spec.deps, 1):
        record = trace.tasks[i]
        if record.status in RAN:
            assert record.started is not None
            for d in deps:
                finished = trace.tasks[d].finished
                assert finished is not None and finished <= record.started
    members = [i for call in trace.batches for i in call.task_ids]
    assert len(members) == len(set(members))  # nobody in two batches (no retries here)
    assert all(len(call.task_ids) <= spec.max_batch for call in trace.batches)
    for i in members:
        assert trace.tasks[i].tool == "f" and trace.tasks[i].served_by is None
    for record in trace.tasks.values():
        if record.served_by is not None:
            leader = trace.tasks[record.served_by]
            assert leader.tool == record.tool and leader.served_by is None


# -- fusion at plan time -----------------------------------------------------------------------


@llmc.tool
def a(x: int) -> int:
    """Add one.

    Args:
        x: a number.
    """
    return x + 1


@llmc.tool
def b(y: int, z: int = 0) -> int:
    """Double and add.

    Args:
        y: a number.
        z: added.
    """
    return 2 * y + z


@llmc.tool
def c(v: int, w: int) -> int:
    """Combine.

    Args:
        v: a number.
        w: another.
    """
    return 10 * v - w


AB = fuse(a, b, name="ab")  # ab(x, z=0) = b(a(x), z)
ABC = fuse(a, b, (c, "w"), name="abc")  # abc(x, v, z=0) = c(v, b(a(x), z))
PLAIN = {"a": a, "b": b, "c": c}
FUSED = {"ab": AB, "abc": ABC}


@st.composite
def fused_plans(draw: st.DrawFn, max_tasks: int = 8) -> list[Task]:
    """Random plans mixing plain and fused calls; arguments are numbers or earlier outputs."""
    tasks: list[Task] = []
    for i in range(1, draw(st.integers(1, max_tasks)) + 1):
        name = draw(st.sampled_from(["a", "b", "c", "ab", "abc"]))
        tool = PLAIN.get(name) or FUSED[name]
        values: list[Any] = []
        for _ in tool.required:
            earlier = draw(st.none() | st.integers(1, i - 1)) if i > 1 else None
            values.append(Ref(earlier) if earlier is not None else draw(st.integers(-3, 3)))
        kwargs = (
            {"z": draw(st.integers(0, 2))} if "z" in tool.parameters and draw(st.booleans()) else {}
        )
        tasks.append(Task(i, name, tuple(values), kwargs))
    return tasks


def by_hand(tasks: list[Task]) -> tuple[list[Task], dict[int, int]]:
    """The same plan written without fused tools: members numbered in order of appearance.

    Returns the tasks and, for each task of the fused plan, the id of its last member.
    """
    last: dict[int, int] = {}
    out: list[Task] = []

    def ref(value: Any) -> Any:
        return Ref(last[value.task_id]) if isinstance(value, Ref) else value

    for task in tasks:
        args = [ref(v) for v in task.args]
        z = task.kwargs.get("z", 0)
        if task.tool in PLAIN:
            kwargs = {k: ref(v) for k, v in task.kwargs.items()}
            out.append(Task(len(out) + 1, task.tool, tuple(args), kwargs))
        else:
            out.append(Task(len(out) + 1, "a", (args[0],)))
            out.append(Task(len(out) + 1, "b", (Ref(len(out)), z)))
            if task.tool == "abc":
                out.append(Task(len(out) + 1, "c", (args[1], Ref(len(out)))))
        last[task.id] = len(out)
    return out, last


@SETTINGS
@given(fused_plans())
def test_expanded_plans_give_the_outputs_of_hand_written_ones(tasks: list[Task]) -> None:
    tools = [a, b, c, AB, ABC]
    plan = Plan(tasks, tools=tools)
    expanded = Fuser().expand_plan(plan)
    hand, last = by_hand(tasks)
    assert len(expanded) == len(hand)  # no member lost, none added
    assert sorted(t.tool for t in expanded) == sorted(t.tool for t in hand)

    ran = asyncio.run(llmc.run_plan(expanded))
    reference = asyncio.run(llmc.run_plan(Plan(hand, tools=[a, b, c])))
    inline = asyncio.run(llmc.run_plan(plan))  # fused tools run whole, unexpanded
    assert ran.ok and reference.ok and inline.ok
    for task in tasks:
        assert ran.outputs[task.id] == reference.outputs[last[task.id]] == inline.outputs[task.id]
    # Every group's members ran once each and end with the fused task itself.
    for label, members in expanded.fused_groups.items():
        assert members[-1] == int(label.rsplit("$", 1)[1])
        assert all(ran.trace.tasks[m].attempts == 1 for m in members)
    # Dependencies: a member never started before the tasks it needs had finished.
    for task in expanded:
        record = ran.trace.tasks[task.id]
        for dep in task.dependencies:
            finished = ran.trace.tasks[dep].finished
            assert finished is not None and record.started is not None
            assert finished <= record.started
