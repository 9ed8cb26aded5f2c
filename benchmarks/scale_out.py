"""Scale-out benchmarks: Ray against one process, and what shared Redis limits cost.

Run: ``python -m benchmarks.scale_out`` (about two minutes on two cores; needs the ``ray`` and
``redis`` extras and a ``redis-server`` binary).

(a) CPU-bound tools: a plan of 8 independent tools of ~0.5 s of pure-Python CPU each, on the
    default :class:`~llmc.executors.AsyncioExecutor` (threads: one GIL) and on a
    :class:`~llmc.executors.ray.RayExecutor` (one process per call), against 8 x 0.5 s run
    one after the other.
(b) Per-call overhead: sequential no-op calls through each executor (one round trip each),
    and Ray's throughput with 400 no-op calls in flight.
(c) Questions: 200 questions of the simulator (instant model, tools a hundred times faster
    than configured) through ``Compiler.map`` on one process and through a ``RayPool`` of
    actors; questions/s and p50/p95 latency.
(d) Redis limits: round trips per second of ``RedisRateLimiter.acquire`` and of a
    ``RedisSemaphore`` hold, from one process, on loopback.

Results and the exact command are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import structlog

import llmc
from llmc import BatchSummary, Outcome
from llmc.executors import AsyncioExecutor, Executor

from .servers import REDIS_BINARY, ray_cluster
from .servers import redis_server as start_redis
from .sim import Policy, Simulator, World
from .sim.profiles import PROFILES
from .sim.workloads import synthetic

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

ROOT = Path(__file__).resolve().parent.parent
NICENESS = "RAY_worker_niceness"  # Ray's name, lower case and all


@llmc.tool
def spin(seconds: float) -> float:
    """Pure-Python work for about ``seconds`` of this thread's CPU time.

    Args:
        seconds: CPU seconds to burn.
    """
    end = time.thread_time() + seconds  # per thread: threads of one process add up
    n = 0
    while time.thread_time() < end:
        n += 1
    return seconds


@llmc.tool
def noop() -> int:
    """Do nothing (a sync tool)."""
    return 0


@llmc.tool
async def anoop() -> int:
    """Do nothing (an async tool)."""
    return 0


def simulated_compiler(base_url: str) -> llmc.Compiler:
    """A compiler over the simulator's tools, a hundred times faster than configured."""
    functions = World(time_scale=0.01).functions()
    tools = [llmc.tool(functions["search"]), llmc.tool(functions["math"])]
    llm = llmc.OpenAI("gpt-4o-mini", base_url=base_url, api_key="sk-sim", max_retries=0)
    return llmc.Compiler(tools, llm, max_replans=1)


# -- (a) CPU-bound tools ---------------------------------------------------------------------


async def cpu_bound(executor: Executor, tools: int, seconds: float) -> float:
    plan = llmc.Plan(tools=[spin])
    for _ in range(tools):
        plan.add("spin", seconds)
    start = time.perf_counter()
    result = await llmc.run_plan(plan, executor=executor)
    assert len(result.outputs) == tools, result.trace.tasks
    return time.perf_counter() - start


# -- (b) per-call overhead -------------------------------------------------------------------


async def per_call(executor: Executor, tool: llmc.Tool, calls: int) -> float:
    """Seconds per call, one call at a time."""
    await executor.call(tool, {})  # warm: a worker, a thread, the function put in the store
    start = time.perf_counter()
    for _ in range(calls):
        await executor.call(tool, {})
    return (time.perf_counter() - start) / calls


async def in_flight(executor: Executor, tool: llmc.Tool, calls: int) -> float:
    """Calls per second with ``calls`` in flight at once."""
    start = time.perf_counter()
    await asyncio.gather(*(executor.call(tool, {}) for _ in range(calls)))
    return calls / (time.perf_counter() - start)


# -- (c) questions ---------------------------------------------------------------------------


async def batch_here(base_url: str, questions: list[str], concurrency: int) -> BatchSummary:
    compiler = simulated_compiler(base_url)
    start = time.perf_counter()
    outcomes: list[Outcome] = [o async for o in compiler.map(questions, concurrency=concurrency)]
    return BatchSummary.of(outcomes, time.perf_counter() - start)


async def batch_on_pool(pool: object, questions: list[str], concurrency: int) -> BatchSummary:
    start = time.perf_counter()
    outcomes = [o async for o in pool.map(questions, concurrency=concurrency)]  # type: ignore[attr-defined]
    return BatchSummary.of(outcomes, time.perf_counter() - start)


# -- (d) Redis -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server's URL; the benchmark stops without the binary."""
    if REDIS_BINARY is None:
        raise SystemExit("redis-server is not installed")
    with start_redis() as (url, _):
        yield url


async def redis_rates(url: str, calls: int) -> tuple[float, float, float]:
    from llmc.redis_limits import RedisRateLimiter, RedisSemaphore

    limiter = RedisRateLimiter(f"bench:{uuid.uuid4().hex}", rate=1e9, burst=10**9, url=url)
    await limiter.acquire()
    start = time.perf_counter()
    for _ in range(calls):
        await limiter.acquire()
    acquires = calls / (time.perf_counter() - start)

    async def share(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()

    start = time.perf_counter()
    await asyncio.gather(*(share(calls // 16) for _ in range(16)))
    shared = calls // 16 * 16 / (time.perf_counter() - start)
    semaphore = RedisSemaphore(f"bench:{uuid.uuid4().hex}", 1_000_000, url=url)
    start = time.perf_counter()
    for _ in range(calls):
        async with semaphore.hold():
            pass
    holds = calls / (time.perf_counter() - start)
    await limiter.aclose()
    await semaphore.aclose()
    return acquires, shared, holds


# -- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    import ray

    from llmc.executors.ray import RayExecutor
    from llmc.ray_pool import RayPool

    print(f"llmc {llmc.__version__}, Python {platform.python_version()}, {sys.platform}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs (load average {load} at the start), Ray {ray.__version__}")
    # Ray starts its workers at nice 15; on a machine shared with other work they then get
    # what is left of the CPUs, and the threads of this (nice 0) process win the comparison.
    os.environ.setdefault(NICENESS, str(args.worker_niceness))
    print(f"Ray workers at nice {os.environ[NICENESS]}")
    with ray_cluster(args.cpus, [ROOT]):
        with AsyncioExecutor() as threads, RayExecutor() as on_ray:
            await cpu_bound(on_ray, args.cpus, 0.05)  # start the workers
            serial = args.tools * args.seconds
            print(
                f"(a) {args.tools} CPU-bound tools of {args.seconds} s each "
                f"({serial:.1f} s one after another)"
            )
            contenders = (("AsyncioExecutor (threads)", threads), ("RayExecutor", on_ray))
            times: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for _ in range(args.rounds):  # alternating, so a busy moment hits both
                for name, executor in contenders:
                    times[name].append(await cpu_bound(executor, args.tools, args.seconds))
            for name, runs in times.items():
                best = min(runs)
                print(
                    f"    {name:26} makespan best {best:5.2f} s, median "
                    f"{statistics.median(runs):5.2f} s   speed-up {serial / best:4.2f}x"
                )
            print(f"(b) per-call overhead, {args.calls} sequential no-op calls")
            thread_call = await per_call(threads, noop, args.calls)
            direct_call = await per_call(threads, anoop, args.calls)
            ray_call = await per_call(on_ray, noop, args.calls)
            ray_async = await per_call(on_ray, anoop, args.calls)
            print(f"    AsyncioExecutor, async tool (awaited)    {direct_call * 1e6:8.1f} us")
            print(f"    AsyncioExecutor, sync tool (thread)      {thread_call * 1e6:8.1f} us")
            print(f"    RayExecutor, sync tool (task)            {ray_call * 1e3:8.2f} ms")
            print(f"    RayExecutor, async tool (task)           {ray_async * 1e3:8.2f} ms")
            rate = await in_flight(on_ray, noop, 400)
            print(f"    RayExecutor, 400 no-op calls in flight   {rate:8.0f} calls/s")
        workload = synthetic("fanout", args.questions)
        questions = [q.text for q in workload.questions]
        world = World(time_scale=0.01)
        with Simulator(Policy(list(workload.questions), world), PROFILES["instant"]) as sim:
            print(
                f"(c) {args.questions} questions (fanout: 6 searches and a combination each), "
                f"instant model, {args.concurrency} in flight"
            )
            await batch_here(sim.base_url(), questions[:10], 4)  # warm
            here = await batch_here(sim.base_url(), questions, args.concurrency)
            factory = functools.partial(simulated_compiler, sim.base_url())
            with RayPool(factory, size=args.cpus, per_actor=args.concurrency // args.cpus) as pool:
                await batch_on_pool(pool, questions[:10], 4)  # warm
                pooled = await batch_on_pool(pool, questions, args.concurrency)
            for name, summary in (("Compiler.map, one process", here), ("RayPool", pooled)):
                print(
                    f"    {name:28} {summary.per_second:6.1f} questions/s   p50 "
                    f"{summary.p50 * 1e3:6.0f} ms   p95 {summary.p95 * 1e3:6.0f} ms   "
                    f"{summary.failures} failed"
                )
    with redis_server() as url:
        acquires, shared, holds = await redis_rates(url, args.redis_calls)
    print(f"(d) Redis limits, one process, loopback, {args.redis_calls} calls each")
    print(
        f"    RedisRateLimiter.acquire        {acquires:8.0f} /s   ({1e6 / acquires:4.0f} us each)"
    )
    print(f"    RedisRateLimiter, 16 in flight  {shared:8.0f} /s")
    print(f"    RedisSemaphore hold             {holds:8.0f} /s   ({1e6 / holds:4.0f} us each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--tools", type=int, default=8, help="CPU-bound tools in the plan")
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per tool")
    parser.add_argument("--rounds", type=int, default=3, help="runs of (a) per executor")
    parser.add_argument("--calls", type=int, default=200, help="sequential no-op calls")
    parser.add_argument("--questions", type=int, default=200, help="questions of (c)")
    parser.add_argument("--concurrency", type=int, default=16, help="questions in flight")
    parser.add_argument(
        "--worker-niceness",
        type=int,
        default=0,
        help="nice value of Ray's workers (Ray's own default is 15; 0 matches this process)",
    )
    parser.add_argument("--redis-calls", type=int, default=2000, help="calls of (d)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
