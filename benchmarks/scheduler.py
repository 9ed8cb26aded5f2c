"""Scheduler benchmarks: per-task overhead, makespan against the critical path, memory.

Run: ``python benchmarks/scheduler.py`` (about a minute on two cores; flags shrink or grow it).

(a) Overhead: a random DAG of no-op async tools, run by llmc and by a bare asyncio baseline
    that runs the same coroutines, each task awaiting one ``asyncio.Event`` per dependency.
(b) Makespan: random DAGs with lognormal task times, run by llmc and by a level-by-level
    scheduler (``asyncio.gather`` per topological generation, as LangGraph's and LlamaIndex's
    LLMCompiler packs do); both are divided by the plan's critical path (1.0 is the bound).
(c) Memory: tracemalloc peaks while building and while running a large plan.

Results and the exact command are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import structlog

import llmc
from llmc import Plan, Ref, Task

# A benchmark is an application: it configures logging as applications do (debug off).
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


@llmc.tool
async def noop(deps: list[int]) -> int:
    """Do nothing with the outputs of the dependencies.

    Args:
        deps: the outputs of the tasks this one depends on.
    """
    return len(deps)


@llmc.tool
async def work(ms: float, deps: list[Any]) -> float:
    """Sleep for ``ms`` milliseconds, as a tool waiting on I/O would.

    Args:
        ms: how long to take.
        deps: the outputs of the tasks this one depends on.
    """
    await asyncio.sleep(ms / 1000)
    return ms


def random_dag(
    n: int,
    rng: random.Random,
    *,
    window: int,
    max_deps: int,
    millis: Mapping[int, float] | None = None,
) -> Plan:
    """A plan of ``n`` tasks; each depends on up to ``max_deps`` of the ``window`` before it.

    Tasks call ``work`` for the given milliseconds, or ``noop`` when ``millis`` is None.
    """
    tasks = []
    for i in range(1, n + 1):
        earlier = range(max(1, i - window), i)
        k = min(len(earlier), rng.randint(0, max_deps))
        refs = [Ref(d) for d in sorted(rng.sample(earlier, k))]
        if millis is None:
            tasks.append(Task(i, "noop", (refs,)))
        else:
            tasks.append(Task(i, "work", (millis[i], refs)))
    return Plan(tasks, tools=[noop, work])


def dependency_ids(task: Task) -> list[int]:
    """The ids of a benchmark task's references, in argument order."""
    refs: list[Ref] = task.args[-1]
    return [ref.task_id for ref in refs]


async def bare_asyncio(plan: Plan, fn: Callable[..., Awaitable[Any]]) -> float:
    """The baseline: one asyncio task and one Event per task, all created up front."""
    events = {task.id: asyncio.Event() for task in plan}
    outputs: dict[int, Any] = {}

    async def run(task: Task, deps: list[int]) -> None:
        for dep in deps:
            await events[dep].wait()
        outputs[task.id] = await fn(*task.args[:-1], [outputs[d] for d in deps])
        events[task.id].set()

    start = time.perf_counter()
    await asyncio.gather(*(run(task, dependency_ids(task)) for task in plan))
    return time.perf_counter() - start


async def level_by_level(plan: Plan, fn: Callable[..., Awaitable[Any]]) -> float:
    """The peers' way: run one topological generation at a time with asyncio.gather."""
    outputs: dict[int, Any] = {}

    async def run(task: Task) -> None:
        outputs[task.id] = await fn(*task.args[:-1], [outputs[d] for d in dependency_ids(task)])

    start = time.perf_counter()
    for level in plan.levels():
        await asyncio.gather(*(run(plan[i]) for i in level))
    return time.perf_counter() - start


async def with_llmc(plan: Plan) -> float:
    start = time.perf_counter()
    result = await llmc.run_plan(plan)
    elapsed = time.perf_counter() - start
    assert result.ok, result
    return elapsed


def timed_once(make: Callable[[], Coroutine[Any, Any, float]], *, gc_on: bool) -> float:
    """One run on a fresh event loop after a full collection, the collector on or off."""
    gc.collect()
    if not gc_on:
        gc.disable()
    try:
        return asyncio.run(make())
    finally:
        gc.enable()


def overhead(args: argparse.Namespace) -> None:
    plan = random_dag(args.tasks, random.Random(1), window=50, max_deps=3)
    edges = sum(len(task.dependencies) for task in plan)
    print(
        f"(a) overhead: {len(plan)} no-op async tasks, {edges} edges, "
        f"{len(plan.levels())} levels, best of {args.repeat}, in us/task"
    )
    for gc_on in (True, False):
        # Alternate the two, so that a busy moment of the machine hits both alike.
        base, ours = float("inf"), float("inf")
        for _ in range(args.repeat):
            base = min(base, timed_once(lambda: bare_asyncio(plan, noop.fn), gc_on=gc_on))
            ours = min(ours, timed_once(lambda: with_llmc(plan), gc_on=gc_on))
        per_base, per_ours = base / len(plan) * 1e6, ours / len(plan) * 1e6
        print(
            f"    garbage collector {'on: ' if gc_on else 'off:'}  bare asyncio (Event per "
            f"task) {per_base:5.1f}   llmc {per_ours:5.1f}   ratio {per_ours / per_base:.2f}x"
        )


def makespan(args: argparse.Namespace) -> None:
    print(
        f"(b) makespan / critical path: {args.dags} random DAGs of {args.dag_size} tasks, "
        f"lognormal times (median {args.median_ms:g} ms, sigma {args.sigma:g})"
    )
    rows = []
    for seed in range(args.dags):
        rng = random.Random(100 + seed)
        times = {
            i: args.median_ms * rng.lognormvariate(0, args.sigma)
            for i in range(1, args.dag_size + 1)
        }
        plan = random_dag(args.dag_size, rng, window=20, max_deps=3, millis=times)
        critical, _ = plan.critical_path({i: ms / 1000 for i, ms in times.items()})
        ours = asyncio.run(with_llmc(plan)) / critical
        bare = asyncio.run(bare_asyncio(plan, work.fn)) / critical
        levels = asyncio.run(level_by_level(plan, work.fn)) / critical
        rows.append((ours, bare, levels))
        print(
            f"    DAG {seed}: {len(plan.levels()):3d} levels, critical path "
            f"{critical * 1000:6.1f} ms   llmc {ours:5.3f}   bare asyncio {bare:5.3f}   "
            f"level-by-level {levels:5.3f}"
        )
    ours, bare, levels = (statistics.mean(column) for column in zip(*rows, strict=True))
    print(
        f"    mean:                                 llmc {ours:5.3f}   bare asyncio {bare:5.3f}"
        f"   level-by-level {levels:5.3f}"
    )


def memory(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    gc.collect()
    tracemalloc.start()
    plan = random_dag(args.memory_tasks, rng, window=50, max_deps=3)
    _, plan_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    held, _ = tracemalloc.get_traced_memory()
    result = asyncio.run(llmc.run_plan(plan))
    _, run_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok
    mib = 1024 * 1024
    print(f"(c) memory (tracemalloc) for a {len(plan)}-task plan of no-op tools")
    print(
        f"    building the plan: peak {plan_peak / mib:7.1f} MiB "
        f"({plan_peak / len(plan):.0f} B/task)"
    )
    print(
        f"    running it:        peak {(run_peak - held) / mib:7.1f} MiB above the plan "
        f"({(run_peak - held) / len(plan):.0f} B/task: records, outputs, result)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the overhead DAG")
    parser.add_argument("--repeat", type=int, default=5, help="runs per overhead measurement")
    parser.add_argument("--dags", type=int, default=5, help="DAGs in the makespan test")
    parser.add_argument("--dag-size", type=int, default=200, help="tasks per makespan DAG")
    parser.add_argument("--median-ms", type=float, default=10.0, help="median task time")
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma of task times")
    parser.add_argument(
        "--memory-tasks", type=int, default=100_000, help="tasks in the memory test (0 skips it)"
    )
    args = parser.parse_args(argv)
    print(f"llmc {llmc.__version__}, Python {platform.python_version()}, {sys.platform}")
    overhead(args)
    makespan(args)
    if args.memory_tasks:
        memory(args)


if __name__ == "__main__":
    main()
