"""llmc side by side with a ReAct agent, parallel function calling and LlamaIndex's LLMCompiler.

Run: ``python -m benchmarks`` (all workloads, 3 questions each, 1 run; ``--help`` for flags).

Every contender (:mod:`benchmarks.peers`) answers the same questions against the same
simulated model (:mod:`benchmarks.sim`: an OpenAI-compatible server on loopback with a
hosted model's latency and prices) and the same simulated tools, in one run. For each
workload the command prints a table: wall time per question (the median over runs, averaged
over questions), how many times faster each row is than each contender, LLM calls, prompt
and completion tokens and cost per question (counted by the simulator from the requests as
sent), tool requests, how many answers were right, and for llmc the latency floor: the
earliest the answer could exist (the end of the plan's stream or of the last tool the answer
needed, whichever is later, plus the joiner's call when a joiner answered) and the wall time
over it, with how many answers the plan wrote itself (``finish``). It writes the raw numbers
as JSON and a chart as SVG into ``--out``.

Contenders take turns in a rotating order, so that none always runs first on a busy machine;
a warm-up question per contender (imports, first connections) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import structlog

from .chart import render_chart
from .peers import CONTENDERS, Contender, Reply, make_contender
from .sim import (
    PROFILES,
    WORKLOADS,
    Policy,
    Profile,
    Simulator,
    World,
    get_tokenizer,
    load_workload,
)
from .sim.workloads import DATA, SAMPLE, Question, Workload

__all__ = ["Sample", "Summary", "main", "run", "summarise"]

OUT = Path(__file__).resolve().parent / "results"
_PACKAGES = (
    "llmc-framework",
    "openai",
    "langgraph",
    "langgraph-prebuilt",
    "langchain-openai",
    "llama-index-core",
    "llama-index-llms-openai",
    "llama-index-packs-agents-llm-compiler",
)


@dataclass(slots=True)
class Sample:
    """One contender answering one question once.

    Attributes:
        workload: the workload's name.
        question: the question's id.
        run: the run number.
        contender: the contender's key.
        wall: seconds from the question to the answer.
        llm_calls: chat completion requests it made.
        prompt_tokens: their prompt tokens.
        completion_tokens: their completion tokens.
        cost: US dollars, at the profile's prices.
        tool_requests: requests the simulated tools served (a batch counts once).
        tool_calls: tool calls those requests carried.
        correct: the answer holds the gold answer and no LLM call lacked a result.
        error: what went wrong, if anything.
        floor: seconds from the question to the earliest moment the answer could exist,
            when the contender tells (llmc).
        answered_by: who wrote the answer, when the contender tells (llmc: plan or joiner).
    """

    workload: str
    question: str
    run: int
    contender: str
    wall: float
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    tool_requests: int
    tool_calls: int
    correct: bool
    error: str | None = None
    floor: float | None = None
    answered_by: str | None = None


@dataclass(slots=True)
class Summary:
    """One contender on one workload: per question, wall time and means.

    Attributes:
        wall: seconds per question: the median over runs, averaged over questions.
        llm_calls, prompt_tokens, completion_tokens, cost, tool_requests: means per question.
        correct: right answers; samples: answers in all.
        floor: the latency floor per question (mean), where the contender reports one.
        over_floor: wall time over the floor, the mean over those answers.
        by_plan: answers the plan wrote itself (llmc's ``finish``).
    """

    workload: str
    contender: str
    wall: float
    llm_calls: float
    prompt_tokens: float
    completion_tokens: float
    cost: float
    tool_requests: float
    correct: int
    samples: int
    floor: float | None = None
    over_floor: float | None = None
    by_plan: int = 0


async def _one(
    sim: Simulator,
    world: World,
    contender: Contender,
    workload: str,
    question: Question,
    run: int,
    limit: float,
) -> Sample:
    """Ask one contender one question; measure it."""
    tag = f"{workload}.{question.id}.{run}.{contender.key}"
    answer = contender.prepare(sim.base_url(tag))
    world.reset()
    error: str | None = None
    reply = Reply("")
    start = time.perf_counter()
    try:
        got = await asyncio.wait_for(answer(question.text), limit)
        reply = got if isinstance(got, Reply) else Reply(got)
    except Exception as exc:  # a contender that fails is reported, not fatal
        error = f"{type(exc).__name__}: {exc}"[:500]
    wall = time.perf_counter() - start
    text = reply.text
    calls = sim.calls_of(tag)
    tools = world.reset()
    prompt = sum(c.prompt_tokens for c in calls)
    completion = sum(c.completion_tokens for c in calls)
    error = error or next((c.error for c in calls if c.error), None)
    return Sample(
        workload,
        question.id,
        run,
        contender.key,
        wall,
        len(calls),
        prompt,
        completion,
        sim.profile.cost(prompt, completion),
        len(tools),
        sum(len(t.keys) for t in tools),
        error is None and question.answer in text and all(c.complete for c in calls),
        error,
        reply.floor - start if reply.floor is not None else None,
        reply.answered_by,
    )


async def run(
    workloads: Sequence[Workload],
    contenders: Sequence[Contender],
    sim: Simulator,
    world: World,
    *,
    runs: int,
    limit: float,
) -> list[Sample]:
    """Every contender on every question, ``runs`` times, in rotating order."""
    first = workloads[0].questions[0]
    for contender in contenders:  # warm-up: imports, first connections; not counted
        await _one(sim, world, contender, "warmup", first, 0, limit)
    samples: list[Sample] = []
    turn = 0
    for workload in workloads:
        for question in workload.questions:
            for number in range(runs):
                world.run = number
                order = [
                    *contenders[turn % len(contenders) :],
                    *contenders[: turn % len(contenders)],
                ]
                turn += 1
                done = [
                    await _one(sim, world, c, workload.name, question, number, limit) for c in order
                ]
                samples += done
                walls = "  ".join(
                    f"{s.contender} {s.wall:.2f}s{'' if s.correct else ' (!)'}" for s in done
                )
                print(f"  {question.id} run {number}: {walls}", file=sys.stderr, flush=True)
    return samples


def summarise(samples: Sequence[Sample]) -> list[Summary]:
    """Per workload and contender: wall time per question and means."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.workload, sample.contender), []).append(sample)
    summaries = []
    for (workload, contender), group in groups.items():
        by_question: dict[str, list[float]] = {}
        for sample in group:
            by_question.setdefault(sample.question, []).append(sample.wall)
        floored = [s for s in group if s.floor is not None and s.floor > 0]
        summaries.append(
            Summary(
                workload,
                contender,
                statistics.mean(statistics.median(w) for w in by_question.values()),
                statistics.mean(s.llm_calls for s in group),
                statistics.mean(s.prompt_tokens for s in group),
                statistics.mean(s.completion_tokens for s in group),
                statistics.mean(s.cost for s in group),
                statistics.mean(s.tool_requests for s in group),
                sum(s.correct for s in group),
                len(group),
                statistics.mean(s.floor for s in floored if s.floor) if floored else None,
                statistics.mean(s.wall / s.floor for s in floored if s.floor) if floored else None,
                sum(s.answered_by == "plan" for s in group),
            )
        )
    return summaries


def table(
    workload: Workload, summaries: Sequence[Summary], runs: int, labels: dict[str, str]
) -> str:
    """A workload's results as a Markdown table."""
    order = {key: index for index, key in enumerate(labels)}
    rows = sorted(
        (s for s in summaries if s.workload == workload.name),
        key=lambda s: order.get(s.contender, len(order)),
    )
    keys = [s.contender for s in rows]
    head = ["contender", "wall s/question", *[f"speedup vs {k}" for k in keys]]
    head += [
        "LLM calls",
        "prompt tok",
        "completion tok",
        "$ / 1k questions",
        "tool requests",
        "right",
        "floor s",
        "wall / floor",
        "plan answered",
    ]
    lines = [
        f"{workload.name}: {workload.description}; {len(workload.questions)} questions x {runs} run"
        f"{'s' if runs != 1 else ''} (per question: wall = median over runs; others = means)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    for row in rows:
        speedups = [
            "—" if o.contender == row.contender else f"{o.wall / row.wall:.2f}" for o in rows
        ]
        cells = [
            f"{labels.get(row.contender, row.contender)}",
            f"{row.wall:.2f}",
            *speedups,
            f"{row.llm_calls:.1f}",
            f"{row.prompt_tokens:,.0f}",
            f"{row.completion_tokens:,.0f}",
            f"{row.cost * 1000:.3f}",
            f"{row.tool_requests:.1f}",
            f"{row.correct}/{row.samples}",
            "—" if row.floor is None else f"{row.floor:.2f}",
            "—" if row.over_floor is None else f"{row.over_floor:.3f}",
            f"{row.by_plan}/{row.samples}" if row.floor is not None else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    """The CPU, its cores, the OS and Python, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def describe(profile: Profile) -> str:
    """A profile in one line."""
    return (
        f"{profile.name}: first token {profile.ttft:g} s + prompt tokens / "
        f"{profile.prefill_rate:,.0f} per s, then {profile.tokens_per_second:g} tokens/s; "
        f"${profile.input_price:g} / ${profile.output_price:g} per million prompt / "
        f"completion tokens ({profile.source})"
    )


def versions() -> dict[str, str]:
    """Versions of llmc and the peers' packages that are installed."""
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated: %(default)s"
    )
    parser.add_argument(
        "--questions", type=int, default=3, help="questions per workload (%(default)s)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each question (%(default)s)")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated: %(default)s"
    )
    parser.add_argument(
        "--profile",
        default="gpt-4o-mini",
        choices=sorted(PROFILES),
        help="the simulated model (%(default)s)",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="sigma of a lognormal factor on each LLM call's latency (%(default)s)",
    )
    parser.add_argument(
        "--search-ms", type=float, default=300.0, help="median search latency (%(default)s ms)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply every delay (%(default)s)"
    )
    parser.add_argument(
        "--tokenizer",
        default="auto",
        choices=("auto", "chars", "tiktoken"),
        help="token counting (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-replans", type=int, default=2, help="llmc's max_replans (%(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds one answer may take (%(default)s)"
    )
    parser.add_argument(
        "--data", type=Path, default=DATA, help="the LLMCompiler question sets (%(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where results.json and chart.svg go (%(default)s)"
    )
    parser.add_argument(
        "--list", action="store_true", help="list workloads, profiles and contenders, and exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; print the tables; write JSON and SVG. Returns the exit status."""
    args = parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    world = World(seed=args.seed, search_median=args.search_ms / 1000, time_scale=args.time_scale)
    profile = PROFILES[args.profile]
    keys = [k.strip() for k in args.contenders.split(",") if k.strip()]
    everyone = [make_contender(key, world, profile, max_replans=args.max_replans) for key in keys]
    unavailable = {c.key: why for c in everyone if (why := c.unavailable()) is not None}
    if args.list:
        print("workloads:", ", ".join(WORKLOADS))
        print("profiles:", ", ".join(f"{p.name} ({p.source})" for p in PROFILES.values()))
        for c in everyone:
            print(f"contender {c.key}: {c.label}; {unavailable.get(c.key) or 'available'}")
        return 0
    contenders = [c for c in everyone if c.key not in unavailable]
    if not contenders:
        print("no contender can run:", unavailable, file=sys.stderr)
        return 1
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    try:
        workloads = [
            load_workload(n, args.questions, data=args.data, seed=args.seed) for n in names
        ]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tokenizer = get_tokenizer(args.tokenizer)
    policy = Policy([q for w in workloads for q in w.questions], world)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command}")
    print(f"machine: {machine()}")
    print(f"model: {describe(profile)}")
    print(
        f"tokens: {tokenizer.name}; search median {args.search_ms:g} ms; "
        f"jitter {args.jitter:g}; time scale {args.time_scale:g}"
    )
    if args.data.resolve() == SAMPLE.resolve() and {"parallelqa", "movies"} & set(names):
        print(f"questions: the slice in {SAMPLE} (the full sets: --data DIR or LLMC_DATA)")
    for key, why in unavailable.items():
        print(f"skipped {key}: {why}")
    started = time.perf_counter()
    with Simulator(
        policy,
        profile,
        tokenizer=tokenizer,
        jitter=args.jitter,
        seed=args.seed,
        time_scale=args.time_scale,
    ) as sim:
        samples = asyncio.run(
            run(workloads, contenders, sim, world, runs=args.runs, limit=args.timeout)
        )
    summaries = summarise(samples)
    labels = {c.key: c.label for c in contenders}
    for workload in workloads:
        print()
        print(table(workload, summaries, args.runs, labels))
    errors = [s for s in samples if s.error]
    for sample in errors[:10]:
        print(f"error: {sample.contender} on {sample.question}: {sample.error}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "machine": machine(),
        "versions": versions(),
        "profile": asdict(profile),
        "tokenizer": tokenizer.name,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(time.perf_counter() - started, 1),
        "contenders": {c.key: {"label": c.label, "needs": c.needs} for c in everyone},
        "unavailable": unavailable,
        "workloads": {
            w.name: {"description": w.description, "questions": [q.id for q in w.questions]}
            for w in workloads
        },
        "summaries": [asdict(s) for s in summaries],
        "samples": [asdict(s) for s in samples],
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    chart = render_chart(
        summaries,
        [w.name for w in workloads],
        [c.key for c in contenders],
        labels,
        title=f"{profile.name}, {command}",
    )
    (args.out / "chart.svg").write_text(chart)
    print(
        f"\nwrote {args.out / 'results.json'} and {args.out / 'chart.svg'} ({report['seconds']} s)"
    )
    return 0
