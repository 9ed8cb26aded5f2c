"""Fusion benchmarks: batched tool calls, and fused tools in the planner's prompt.

Run: ``python benchmarks/fusion.py`` (about 10 s).

(a) Batching at dispatch: 50 parallel calls of a tool whose endpoint costs 50 ms per request
    plus 1 ms per item, one request per call (unfused) against batches (fused), with no limit
    on concurrent requests and with an endpoint that serves 4 requests at a time. Wall time
    (median of 3 runs) and the number of requests.
(b) Plan-time fusion: ParallelQA-style questions (k lookups, each followed by a computation on
    its result, sometimes a final comparison), answered by the compiler with a scripted LLM
    whose plans are written once with ``search`` and ``math`` and once with the fused tool
    ``search_then_math``. Token counts are :class:`llmc.testing.ScriptedLLM`'s estimates over
    the prompts llmc actually rendered and the plans the LLM wrote.

Results and the exact command are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

import llmc
from llmc.llm.base import Message
from llmc.testing import ScriptedLLM

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

DATA = Path(__file__).resolve().parents[2] / "shared/data/llmcompiler/parallelqa_dataset.json"

# -- (a) batching ------------------------------------------------------------------------------


class Endpoint:
    """A simulated API: 50 ms per request plus 1 ms per item, serving ``slots`` at a time."""

    def __init__(self, slots: int | None) -> None:
        self.requests = 0
        self.gate = asyncio.Semaphore(slots) if slots else None

    async def serve(self, items: int) -> None:
        self.requests += 1
        if self.gate is None:
            await asyncio.sleep(0.050 + 0.001 * items)
            return
        async with self.gate:
            await asyncio.sleep(0.050 + 0.001 * items)


def endpoint_tools(endpoint: Endpoint, max_batch: int) -> tuple[llmc.Tool, llmc.Tool]:
    """The same lookup, one request per call and batched."""

    async def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: what to look up.
        """
        await endpoint.serve(1)
        return key.upper()

    async def lookup_many(calls: list[dict[str, Any]]) -> list[str]:
        await endpoint.serve(len(calls))
        return [call["key"].upper() for call in calls]

    single = llmc.tool(lookup)
    batched = llmc.tool(batch=lookup_many, max_batch=max_batch)(lookup)
    return single, batched


async def batch_once(fused: bool, max_batch: int, slots: int | None) -> tuple[float, int]:
    endpoint = Endpoint(slots)
    single, batched = endpoint_tools(endpoint, max_batch)
    tool = batched if fused else single
    tasks = [llmc.Task(i, "lookup", (f"key {i}",)) for i in range(1, 51)]
    start = time.perf_counter()
    result = await llmc.run_plan(tasks, tools=[tool])
    wall = time.perf_counter() - start
    assert result.ok and result.outputs[7] == "KEY 7"
    return wall, endpoint.requests


def batching(repeat: int) -> None:
    print("(a) 50 parallel calls; the endpoint costs 50 ms per request + 1 ms per item")
    print(f"    {'endpoint':<26}{'calls':<24}{'wall (ms)':>10}{'requests':>10}")
    for slots in (None, 4):
        where = "unlimited requests" if slots is None else f"{slots} requests at a time"
        for label, fused, size in (
            ("one request per call", False, 1),
            ("batched, max_batch=50", True, 50),
            ("batched, max_batch=10", True, 10),
        ):
            runs = [asyncio.run(batch_once(fused, size, slots)) for _ in range(repeat)]
            wall = statistics.median(w for w, _ in runs) * 1000
            print(f"    {where:<26}{label:<24}{wall:>10.1f}{runs[0][1]:>10}")
            where = ""


# -- (b) plan-time fusion ----------------------------------------------------------------------

#: Per question: (id in the ParallelQA set, the lookups with the computation on each, and a
#: final computation over their results, if the question asks for a number).
QUESTIONS: list[tuple[str, list[tuple[str, str]], str | None]] = [
    ("1", [("Mariana Trench depth", "x * 0.8"), ("Puerto Rico Trench depth", "x * 1.2")], None),
    ("11", [("Mariana Trench depth", "x * 1.15"), ("Puerto Rico Trench depth", "x * 0.8")], "-"),
    (
        "22",
        [
            ("Mariana Trench depth", "x * 0.85"),
            ("Puerto Rico Trench depth", "x * 1.25"),
            ("Sunda Trench depth", "x * 1.2"),
        ],
        None,
    ),
    (
        "37",
        [
            ("Washington Monument height", "x * 1.15"),
            ("Motherland Calls height", "x * 0.95"),
            ("Ushiku Daibutsu height", "x * 1.08"),
        ],
        "+",
    ),
    (
        "53",
        [
            ("Mariana Trench depth", "x * 0.75"),
            ("Puerto Rico Trench depth", "x * 1.15"),
            ("Sunda Trench depth", "x * 0.9"),
            ("South Sandwich Trench depth", "x * 1.2"),
        ],
        None,
    ),
    (
        "57",
        [
            ("Mount Kilimanjaro height", "x * 1.35"),
            ("Aconcagua height", "x * 1.5"),
            ("K2 height", "x * 0.8"),
            ("Mount Elbert height", "x * 2"),
        ],
        None,
    ),
]

FACTS = {
    "Mariana Trench depth": 10994,
    "Puerto Rico Trench depth": 8376,
    "Sunda Trench depth": 7290,
    "South Sandwich Trench depth": 8265,
    "Washington Monument height": 169,
    "Motherland Calls height": 85,
    "Ushiku Daibutsu height": 120,
    "Mount Kilimanjaro height": 5895,
    "Aconcagua height": 6961,
    "K2 height": 8611,
    "Mount Elbert height": 4401,
}


@llmc.tool(pure=True)
async def search(query: str) -> str:
    """Search Wikipedia and return the first paragraph of the best matching article.

    Args:
        query: what to look up, e.g. "Mariana Trench depth".
    """
    await asyncio.sleep(0.005)
    subject = query.rsplit(" ", 1)[0]
    return f"The {subject} measures {FACTS.get(query, 0)} m according to recent surveys."


@llmc.tool(pure=True)
def math(problem: str, context: str = "") -> float:
    """Solve an arithmetic problem; x is the first number found in the context.

    Args:
        problem: an expression, e.g. "x * 0.8" or "8795.2 - 10051.2".
        context: text that holds the number x, e.g. a search result.
    """
    found = re.search(r"-?\d+(?:\.\d+)?", context)
    x = float(found.group()) if found else 0.0
    return round(float(eval(problem, {"__builtins__": {}}, {"x": x})), 4)


search_then_math = llmc.fuse(search, (math, "context"))


def plan_text(lookups: list[tuple[str, str]], final: str | None, fused: bool) -> str:
    """The plan a planner writes for one question, with or without the fused tool."""
    lines: list[str] = []
    results: list[int] = []
    if fused:
        for query, problem in lookups:
            lines.append(f"{len(lines) + 1}. search_then_math({query!r}, {problem!r})")
            results.append(len(lines))
    else:
        for query, _ in lookups:
            lines.append(f"{len(lines) + 1}. search({query!r})")
        for i, (_, problem) in enumerate(lookups):
            lines.append(f"{len(lines) + 1}. math({problem!r}, ${i + 1})")
            results.append(len(lines))
    if final is not None:
        expression = f" {final} ".join(f"${n}" for n in results)
        lines.append(f"{len(lines) + 1}. math({expression!r})")
    return "\n".join([*lines, "join()", "<END_OF_PLAN>"])


@dataclass
class Totals:
    planner_prompt: int = 0
    planner_completion: int = 0
    joiner_prompt: int = 0
    joiner_completion: int = 0
    calls_written: int = 0
    tool_calls: int = 0


def scripted(questions: dict[str, str], fused: bool) -> ScriptedLLM:
    plans = {questions[qid]: plan_text(lookups, final, fused) for qid, lookups, final in QUESTIONS}

    def reply(messages: Sequence[Message]) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Given a user question"):
            return next(plan for question, plan in plans.items() if question in user)
        return "Thought: the observations answer it.\nAction: Finish(see the numbers)"

    return ScriptedLLM(reply, chunk_size=16)


async def compile_all(questions: dict[str, str], fused: bool) -> Totals:
    llm = scripted(questions, fused)
    extra = [search_then_math] if fused else []
    compiler = llmc.Compiler([search, math], llm, fused=extra, max_replans=0)
    totals = Totals()
    for qid, _, _ in QUESTIONS:
        answer = await compiler.run(questions[qid])
        for label, usage in answer.usage_by_call:
            if label.startswith("plan"):
                totals.planner_prompt += usage.prompt_tokens
                totals.planner_completion += usage.completion_tokens
            else:
                totals.joiner_prompt += usage.prompt_tokens
                totals.joiner_completion += usage.completion_tokens
        totals.calls_written += sum(len(r.tasks) for r in answer.rounds)
        totals.tool_calls += sum(r.attempts for r in answer.trace.tasks.values())
    return totals


def plan_time(data: Path) -> None:
    items = {item["id"]: item["question"] for item in json.loads(data.read_text())}
    branches = [len(lookups) for _, lookups, _ in QUESTIONS]
    print(
        f"(b) {len(QUESTIONS)} ParallelQA questions ({min(branches)}-{max(branches)} lookups "
        "each), scripted plans, tokens estimated from the rendered prompts"
    )
    plain = asyncio.run(compile_all(items, fused=False))
    fused = asyncio.run(compile_all(items, fused=True))
    rows = [
        ("planner prompt tokens", "planner_prompt"),
        ("planner completion tokens", "planner_completion"),
        ("joiner prompt tokens", "joiner_prompt"),
        ("calls the LLM wrote", "calls_written"),
        ("tool calls that ran", "tool_calls"),
    ]
    print(f"    {'':<28}{'search + math':>14}{'+ search_then_math':>20}{'change':>9}")
    for label, name in rows:
        a, b = getattr(plain, name), getattr(fused, name)
        print(f"    {label:<28}{a:>14}{b:>20}{(b - a) / a:>+9.0%}")
    total_a = plain.planner_prompt + plain.planner_completion + plain.joiner_prompt
    total_b = fused.planner_prompt + fused.planner_completion + fused.joiner_prompt
    total_a += plain.joiner_completion
    total_b += fused.joiner_completion
    print(f"    {'all tokens':<28}{total_a:>14}{total_b:>20}{(total_b - total_a) / total_a:>+9.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per batching row")
    parser.add_argument("--data", type=Path, default=DATA, help="parallelqa_dataset.json")
    args = parser.parse_args(argv)
    print(f"llmc {llmc.__version__}, Python {platform.python_version()}, {sys.platform}")
    batching(args.repeat)
    plan_time(args.data)


if __name__ == "__main__":
    main()
