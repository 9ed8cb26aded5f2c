"""Telemetry and MCP benchmarks: what exporting runs and calling MCP tools cost.

Run: ``python benchmarks/telemetry.py`` (about a minute; needs the ``otel`` and ``mcp``
extras).

(a) Export. One plan of ``--tasks`` independent trivial async tasks, run again and again,
    three ways in turn within one process: without any observer (the default), with
    :func:`llmc.otel.instrument` to an SDK ``TracerProvider`` whose processor drops every
    span (what the run itself pays), and with a ``SimpleSpanProcessor`` into an in-memory
    exporter (what a synchronous exporter costs). Microseconds per task, median of
    ``--repeat`` runs of each.
(b) MCP calls. A tool of the tests' MCP server (``tests/mcp_server.py``) on stdio and on
    streamable HTTP against the same function as a local llmc tool: ``--calls`` calls one
    after another, and as many in one plan at once (they run in parallel). Milliseconds
    per call, median of 3.

Results and the exact command are recorded in docs/benchmarks.md ("Telemetry and MCP").
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import structlog
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmc
from benchmarks.servers import MCP_SERVER, mcp_http_server

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


@llmc.tool
async def nothing(i: int) -> int:
    """Return its argument."""
    return i


@llmc.tool
async def add(a: int, b: int) -> int:
    """Add two integers (the local twin of the MCP server's add)."""
    return a + b


class Dropping(SpanProcessor):
    """A span processor that keeps nothing: what instrumentation costs before any export."""

    def on_end(self, span: ReadableSpan) -> None:
        return None


# -- (a) export -------------------------------------------------------------------------------


async def export(tasks: int, repeat: int) -> None:
    plan = llmc.Plan((llmc.Task(i, "nothing", (i,)) for i in range(1, tasks + 1)), tools=[nothing])
    dropping = TracerProvider()
    dropping.add_span_processor(Dropping())
    memory = InMemorySpanExporter()
    exporting = TracerProvider()
    exporting.add_span_processor(SimpleSpanProcessor(memory))
    setups: dict[str, Callable[[], None]] = {
        "no observer (default)": llmc.otel.uninstrument,
        "otel, spans dropped": lambda: llmc.otel.instrument(dropping),
        "otel, in-memory exporter": lambda: llmc.otel.instrument(exporting),
    }
    times: dict[str, list[float]] = {name: [] for name in setups}
    await llmc.run_plan(plan)  # warm up
    for _ in range(repeat):
        for name, setup in setups.items():  # interleaved, so load changes hit all alike
            setup()
            started = time.perf_counter()
            await llmc.run_plan(plan)
            times[name].append(time.perf_counter() - started)
            memory.clear()
    llmc.otel.uninstrument()
    base = statistics.median(times["no observer (default)"])
    print(f"(a) export: a plan of {tasks} independent tasks, median of {repeat} runs each")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"    {name:26} {median / tasks * 1e6:7.1f} us/task   x{median / base:.2f}")


# -- (b) MCP calls ----------------------------------------------------------------------------


async def per_call(tools: Sequence[llmc.Tool], calls: int) -> tuple[float, float]:
    """Milliseconds per call of ``add``: one after another, and all at once in one plan."""
    sequential: list[float] = []
    parallel: list[float] = []
    one = llmc.Plan.parse("1. add(1, 2)\njoin()", tools=tools)
    many = llmc.Plan((llmc.Task(i, "add", (i, i)) for i in range(1, calls + 1)), tools=tools)
    await llmc.run_plan(one)  # warm up
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            await llmc.run_plan(one)
        sequential.append((time.perf_counter() - started) / calls)
        started = time.perf_counter()
        result = await llmc.run_plan(many)
        parallel.append((time.perf_counter() - started) / calls)
        assert result.ok, result
    return statistics.median(sequential) * 1e3, statistics.median(parallel) * 1e3


async def mcp_calls(calls: int, url: str) -> None:
    print(f"(b) MCP calls of add(a, b): {calls} calls, ms per call, median of 3")
    print(f"    {'':26} {'one by one':>11} {'all at once':>12}")
    rows = [("local llmc tool", await per_call([add], calls))]
    async with llmc.mcp.stdio(sys.executable, str(MCP_SERVER)) as server:
        rows.append(("MCP server on stdio", await per_call(server.tools, calls)))
    async with llmc.mcp.http(url) as server:
        rows.append(("MCP server on HTTP", await per_call(server.tools, calls)))
    for name, (one_by_one, at_once) in rows:
        print(f"    {name:26} {one_by_one:11.3f} {at_once:12.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in the export plan")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each export setup")
    parser.add_argument("--calls", type=int, default=100, help="MCP calls per measurement")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()}, {platform.machine()}, {platform.system()}")
    asyncio.run(export(args.tasks, args.repeat))
    with mcp_http_server() as url:
        asyncio.run(mcp_calls(args.calls, url))


if __name__ == "__main__":
    main()
