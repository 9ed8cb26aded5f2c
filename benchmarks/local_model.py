"""The embedded local model: load time, planner latency, tokens/s, and what the accelerations buy.

Run: python benchmarks/local_model.py [--repeats 2] [--questions 3] [--model PATH] [--threads N]

Needs the ``local`` extra (``pip install -e ".[local]"``). One model is loaded once; every
configuration runs on it, switching ``prefix_cache`` and ``prompt_lookup`` between calls, so
all see the same prompts in the same run. The workload is llmc's own: the default planner
template over the ready-made tool packs (files, math, text), grammar-constrained to a 4-task
plan (this model, greedy, always writes tasks up to the grammar's limit), each plan followed by
a joiner call, as in a real run; so a planner call starts after a joiner call has replaced the
context. Configurations take turns, question by question, so that machine noise spreads over
all of them; the first call of each configuration is a warm-up and not counted.

Columns (medians over the counted planner calls):

- latency: from the request to the last chunk of the plan;
- first token: time to the first text (the prompt's computation, mostly);
- decode tok/s: plan tokens after the first, per second after the first;
- cached: prompt tokens reused from the KV cache, of the prompt's tokens;
- CPU: CPU seconds the process spent on the call (all its threads): unlike the wall-clock
  columns, hardly moved by other processes on a shared machine;
- speedup: baseline latency / this latency (wall clock, then CPU time).

Every configuration but one checks the grammar lazily (the model's pick first, the whole
vocabulary masked only when the pick is refused); "grammar masked in full" masks every
step, as llama-cpp-python itself does, to show what the lazy check saves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import llmc
from llmc.grammar import joiner_grammar, plan_grammar
from llmc.joiner import Joiner
from llmc.llm import GenerateOptions, Local
from llmc.parse import END_OF_PLAN, PlanParser
from llmc.planner import Planner

TOOLS = [
    Path(__file__).resolve().parents[1] / "tools" / name
    for name in ("files.py", "math.py", "text.py")
]
QUESTIONS = [
    "Which is longer in lines, README.md or docs/index.md?",
    "How many words are in notes.txt, in percent of the words in story.txt?",
    "What are the three most common words in story.txt?",
    "Which numbers appear in report.md, and what is their sum?",
    "Which Python files under src mention 'asyncio'?",
]
CONFIGS: dict[str, dict[str, object]] = {
    "baseline (no reuse, no drafts)": {"prefix_cache": False, "prompt_lookup": False},
    "prefix KV reuse": {"prefix_cache": True, "prompt_lookup": False},
    "prefix, grammar masked in full": {
        "prefix_cache": True,
        "prompt_lookup": False,
        "lazy_grammar": False,
    },
    "prompt lookup (10 drafts)": {
        "prefix_cache": False,
        "prompt_lookup": True,
        "num_pred_tokens": 10,
    },
    "prefix + lookup (10 drafts)": {
        "prefix_cache": True,
        "prompt_lookup": True,
        "num_pred_tokens": 10,
    },
    "prefix + lookup (4 drafts)": {
        "prefix_cache": True,
        "prompt_lookup": True,
        "num_pred_tokens": 4,
    },
}


@dataclass
class Call:
    latency: float
    cpu: float
    first_token: float
    tokens: int
    prompt_tokens: int
    cached: int
    tasks: int
    text: str

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / max(self.latency - self.first_token, 1e-9)


@dataclass
class Results:
    calls: list[Call] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)


async def timed(llm: Local, messages: list[llmc.llm.Message], options: GenerateOptions) -> Call:
    started, cpu = time.perf_counter(), time.process_time()
    first: float | None = None
    parts: list[str] = []
    usage = None
    async for chunk in llm.stream(messages, options):
        if chunk.text:
            first = first or time.perf_counter()
            parts.append(chunk.text)
        usage = chunk.usage or usage
    latency, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert usage is not None
    text = "".join(parts)
    return Call(
        latency=latency,
        cpu=cpu,
        first_token=(first or time.perf_counter()) - started,
        tokens=usage.completion_tokens,
        prompt_tokens=usage.prompt_tokens,
        cached=usage.cached_tokens,
        tasks=0,
        text=text,
    )


def configure(llm: Local, settings: dict[str, object]) -> None:
    llm.prefix_cache = bool(settings["prefix_cache"])
    llm.prompt_lookup = bool(settings["prompt_lookup"])
    llm.num_pred_tokens = int(settings.get("num_pred_tokens", 10))  # type: ignore[call-overload]
    llm.lazy_grammar = bool(settings.get("lazy_grammar", True))


async def one_question(
    llm: Local, planner: Planner, joiner: Joiner, question: str, plan: GenerateOptions
) -> Call:
    """A planner call (measured), then the joiner call that follows it in a real run."""
    call = await timed(llm, planner.messages(question), plan)
    parser = PlanParser(tools=planner.tools)
    tasks = parser.feed(call.text) + parser.close()
    call.tasks = len(tasks)
    observations = {task.id: "(observation)" for task in tasks}
    join = GenerateOptions(temperature=0.0, grammar=joiner_grammar(), max_tokens=60)
    await timed(llm, joiner.messages(question, tasks, observations), join)
    return call


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the questions")
    parser.add_argument("--questions", type=int, default=3, help="questions per round")
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: Local's)")
    args = parser.parse_args()

    loads = []
    for _ in range(2):  # the first load may read the file from disk; the second from cache
        llm = Local(args.model, n_threads=args.threads)
        llm.load()
        loads.append(llm.load_seconds or 0.0)
        if len(loads) < 2:
            llm.close()
    tools = llmc.Toolbox.from_path(*TOOLS)
    planner, joiner = Planner(llm, tools), Joiner(llm)
    plan = GenerateOptions(
        temperature=0.0, stop=(END_OF_PLAN,), grammar=plan_grammar(tools, max_tasks=4)
    )
    questions = QUESTIONS[: args.questions]
    results = {name: Results() for name in CONFIGS}
    for settings in CONFIGS.values():  # warm-up: states stored, as in a long-lived process
        configure(llm, settings)
        await one_question(llm, planner, joiner, "Warm up: how long is README.md?", plan)
    for _ in range(args.repeats):
        for question in questions:
            for name, settings in CONFIGS.items():
                configure(llm, settings)
                call = await one_question(llm, planner, joiner, question, plan)
                results[name].calls.append(call)
                results[name].texts[question] = call.text
    report(llm, loads, results, questions)


def report(
    llm: Local, loads: list[float], results: dict[str, Results], questions: list[str]
) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"model: {llm.describe()}")
    print(
        f"llama-cpp-python {version('llama-cpp-python')}, {llm.n_threads} thread(s) on "
        f"{cores} core(s), n_ctx {llm.n_ctx}"
    )
    print(f"load: {loads[0]:.2f} s first, {loads[1]:.2f} s again (file in the page cache)")
    calls = results["baseline (no reuse, no drafts)"].calls
    print(
        f"workload: {len(questions)} questions x {len(calls) // len(questions)} repeats; "
        f"plans of {sorted({c.tasks for c in calls})} tasks, "
        f"~{statistics.median(c.tokens for c in calls):.0f} tokens, "
        f"prompt ~{statistics.median(c.prompt_tokens for c in calls):.0f} tokens"
    )
    base = statistics.median(c.latency for c in calls)
    base_cpu = statistics.median(c.cpu for c in calls)
    header = (
        f"{'configuration':32} {'latency':>9} {'first token':>12} {'decode tok/s':>13} "
        f"{'cached':>11} {'CPU':>7} {'speedup (wall, CPU)':>20}"
    )
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        latency = statistics.median(c.latency for c in result.calls)
        first = statistics.median(c.first_token for c in result.calls)
        rate = statistics.median(c.decode_rate for c in result.calls)
        cached = statistics.median(c.cached for c in result.calls)
        prompt = statistics.median(c.prompt_tokens for c in result.calls)
        cpu = statistics.median(c.cpu for c in result.calls)
        print(
            f"{name:32} {latency:8.2f}s {first:11.2f}s {rate:13.1f} "
            f"{cached:5.0f}/{prompt:<5.0f} {cpu:6.2f}s "
            f"{base / latency:11.2f}x {base_cpu / cpu:6.2f}x"
        )
    reference = results["baseline (no reuse, no drafts)"].texts
    same = all(r.texts == reference for r in results.values())
    print(f"plans identical in every configuration: {'yes' if same else 'NO'}")
    example = reference[questions[0]]
    print(
        f"plan for {questions[0]!r}:\n" + "\n".join("    " + line for line in example.splitlines())
    )


if __name__ == "__main__":
    asyncio.run(main())
