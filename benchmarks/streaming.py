"""Streaming dispatch: how soon tools start while the planner is still writing.

Run: python benchmarks/streaming.py [--questions 10] [--tokens-per-second 60]

For ParallelQA-style questions (k lookups, k computations, one combination; k from the
question set's branch count), a scripted OpenAI-compatible server on loopback streams each
plan at a given token rate, and llmc.Compiler runs it through the real HTTP client. Side by
side, in the same run, the same plans are run the way non-streaming implementations do:
wait for the whole plan, then run it. Printed per question: the delay from the end of a
task's line to its start (llmc), and the time to the answer for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import llmc
from llmc.llm import OpenAI
from llmc.testing import ScriptedOpenAIServer

# The LLMCompiler paper's question sets (MIT), kept beside the repository; LLMC_DATA overrides.
DATA = Path(
    os.environ.get(
        "LLMC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "llmcompiler"
    )
)
LOOKUP_SECONDS = 0.30  # a search tool, as in the LLMCompiler paper's ParallelQA setting
MATH_SECONDS = 0.005


@llmc.tool
async def search(query: str) -> str:
    """Look a fact up."""
    await asyncio.sleep(LOOKUP_SECONDS)
    return f"{query}: {len(query) * 100} units"


@llmc.tool
async def math(expression: str, values: list[str] | None = None) -> str:
    """Compute from earlier results."""
    await asyncio.sleep(MATH_SECONDS)
    return f"result of {expression}"


def gold_plan(question: str, branches: int) -> str:
    """The plan a good planner writes: k lookups, k computations, one combination."""
    lines = [f'{i}. search("entity {i} of: {question[:40]}")' for i in range(1, branches + 1)]
    for i in range(1, branches + 1):
        lines.append(f'{branches + i}. math("adjust ${i}", [${i}])')
    refs = ", ".join(f"${branches + i}" for i in range(1, branches + 1))
    lines.append(f'{2 * branches + 1}. math("compare", [{refs}])')
    return "\n".join(lines) + "\njoin()\n<END_OF_PLAN>"


def load_questions(count: int) -> list[tuple[str, int]]:
    path = DATA / "parallelqa_dataset.json"
    if path.is_file():
        items = json.loads(path.read_text())
        by_branch: dict[int, list[str]] = {}
        for item in items:
            by_branch.setdefault(int(item.get("branch", 2)), []).append(item["question"])
        picked: list[tuple[str, int]] = []
        while len(picked) < count and any(by_branch.values()):  # every branch count in turn
            for branches in sorted(by_branch):
                if by_branch[branches] and len(picked) < count:
                    picked.append((by_branch[branches].pop(0), branches))
        return picked
    return [(f"synthetic question {i}", 2 + i % 3) for i in range(count)]


async def streamed(plan: str, chars_per_chunk: int, delay: float) -> tuple[float, list[float]]:
    finish = "Thought: done.\nAction: Finish(answer)"
    with ScriptedOpenAIServer([plan, finish], chunk_size=chars_per_chunk, chunk_delay=delay) as s:
        llm = OpenAI("scripted", base_url=s.base_url)
        start = time.perf_counter()
        answer = await llmc.Compiler([search, math], llm).run("q")
        return time.perf_counter() - start, list(answer.dispatch_delays.values())


async def plan_then_run(plan: str, chars_per_chunk: int, delay: float) -> float:
    """The same plan and joiner call, but the plan runs only once it is complete."""
    finish = "Thought: done.\nAction: Finish(answer)"
    with ScriptedOpenAIServer([plan, finish], chunk_size=chars_per_chunk, chunk_delay=delay) as s:
        llm = OpenAI("scripted", base_url=s.base_url)
        start = time.perf_counter()
        completion = await llmc.llm.generate(llm, [{"role": "user", "content": "q"}])
        await llmc.run_plan(llmc.Plan.parse(completion.text, tools=[search, math]))
        await llmc.llm.generate(llm, [{"role": "user", "content": "join"}])
        return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=float, default=60.0)
    opts = parser.parse_args()
    chars_per_chunk = 4  # about one token
    delay = 1 / opts.tokens_per_second
    print(
        f"{opts.questions} ParallelQA-style plans streamed at {opts.tokens_per_second:g} tokens/s;"
        f" lookups {LOOKUP_SECONDS * 1000:.0f} ms"
    )
    print(
        f"{'k':>2} {'plan chars':>10} {'llmc answer':>12} {'plan, then run':>15} {'ratio':>6}"
        f" {'dispatch delay (max)':>21}"
    )
    await streamed(gold_plan("warm-up", 2), chars_per_chunk, 0)  # imports, first connection
    ratios, delays = [], []
    for question, branches in load_questions(opts.questions):
        plan = gold_plan(question, branches)
        llmc_time, dispatch = await streamed(plan, chars_per_chunk, delay)
        baseline = await plan_then_run(plan, chars_per_chunk, delay)
        ratios.append(baseline / llmc_time)
        delays += dispatch
        print(
            f"{branches:>2} {len(plan):>10} {llmc_time:>11.3f}s {baseline:>14.3f}s"
            f" {baseline / llmc_time:>5.2f}x {max(dispatch) * 1e3:>18.2f} ms"
        )
    print(
        f"mean speed-up of streaming dispatch: {statistics.mean(ratios):.2f}x;"
        f" dispatch delay median {statistics.median(delays) * 1e3:.2f} ms,"
        f" max {max(delays) * 1e3:.2f} ms over {len(delays)} tasks"
    )


if __name__ == "__main__":
    asyncio.run(main())
