"""Many questions at once: Compiler.map on the simulator, the loop under it, the summary,
and ``llmc run --batch``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_tools import WORLD, simulated_compiler

import llmc
from benchmarks.sim import Policy, Simulator
from benchmarks.sim.profiles import PROFILES
from benchmarks.sim.workloads import synthetic
from llmc.cli import main
from llmc.mapping import BatchSummary, Outcome, answer_all

HERE = Path(__file__).parent
WORKLOAD = synthetic("fanout", 50)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(Policy(list(WORKLOAD.questions), WORLD), PROFILES["instant"]) as running:
        yield running


async def test_map_answers_fifty_questions_as_they_finish(sim: Simulator) -> None:
    compiler = simulated_compiler(sim.base_url())
    questions = [q.text for q in WORKLOAD.questions]
    outcomes = [o async for o in compiler.map(questions, concurrency=8)]
    assert sorted(o.index for o in outcomes) == list(range(50))
    for outcome in outcomes:
        expected = WORKLOAD.questions[outcome.index]
        assert outcome.ok, outcome.error
        assert outcome.question == expected.text
        assert expected.answer in outcome.text
        assert outcome.answer is not None and outcome.tokens == outcome.answer.usage.total_tokens
        assert outcome.llm_calls >= 1 and outcome.latency > 0  # a plan may answer itself
    summary = BatchSummary.of(outcomes, 1.0)
    assert (summary.answers, summary.failures) == (50, 0)
    assert summary.tokens == sum(o.tokens for o in outcomes) > 0
    assert summary.cost is not None and summary.cost > 0
    assert 0 < summary.p50 <= summary.p95


async def test_a_failed_question_is_an_outcome_and_the_batch_goes_on(sim: Simulator) -> None:
    compiler = simulated_compiler(sim.base_url())
    questions = [WORKLOAD.questions[0].text, "a question the simulator was never given"]
    outcomes = {o.index: o async for o in compiler.map(questions, concurrency=2)}
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, llmc.LLMError)
    assert outcomes[1].text == ""


@settings(max_examples=40, deadline=None)
@given(
    delays=st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=25),
    concurrency=st.integers(min_value=1, max_value=6),
)
def test_answer_all_bounds_concurrency_and_yields_in_finishing_order(
    delays: list[int], concurrency: int
) -> None:
    in_flight = most = 0
    finished: list[int] = []

    async def one(index: int, question: str) -> Outcome:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(delays[index]):  # finishes after this many turns of the loop
            await asyncio.sleep(0)
        in_flight -= 1
        finished.append(index)
        if delays[index] == 3:
            raise ValueError(f"question {index} failed")
        return Outcome(index, question, text=question.upper())

    async def collect() -> list[Outcome]:
        questions = [f"q{i}" for i in range(len(delays))]
        return [o async for o in answer_all(questions, one, concurrency=concurrency)]

    outcomes = asyncio.run(collect())
    assert most <= concurrency
    assert sorted(o.index for o in outcomes) == list(range(len(delays)))
    # Yielded in the order they finished (ties, finished in one turn, by index).
    position = {index: n for n, index in enumerate(finished)}
    assert [position[o.index] for o in outcomes] == sorted(position[o.index] for o in outcomes)
    for outcome in outcomes:
        if delays[outcome.index] == 3:
            assert isinstance(outcome.error, ValueError)
        else:
            assert outcome.ok and outcome.text == f"Q{outcome.index}"


async def test_leaving_early_cancels_the_questions_in_flight() -> None:
    cancelled = 0

    async def one(index: int, question: str) -> Outcome:
        nonlocal cancelled
        try:
            await asyncio.sleep(0 if index == 0 else 30)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return Outcome(index, question)

    stream = answer_all([f"q{i}" for i in range(10)], one, concurrency=4)
    first = await anext(stream)
    await stream.aclose()
    assert first.index == 0 and cancelled == 3


def test_a_bad_concurrency_is_refused() -> None:
    async def collect() -> None:
        async for _ in answer_all(["q"], lambda i, q: asyncio.sleep(0), concurrency=0):  # type: ignore[arg-type, return-value]
            pass

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(collect())


def test_cli_batch_prints_answers_and_a_summary(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "questions.txt"
    chosen = WORKLOAD.questions[:5]
    lines = ["# five questions", *(q.text for q in chosen), "", "an unknown question"]
    questions.write_text("\n".join(lines) + "\n")
    status = main(
        [
            "run",
            "--batch",
            str(questions),
            "--concurrency",
            "3",
            "--tools",
            str(HERE / "sim_tools.py"),
            "--model",
            "gpt-4o-mini",
            "--base-url",
            sim.base_url(),
        ]
    )
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 1  # one question failed
    assert sorted(r["index"] for r in records) == list(range(6))
    by_index = {r["index"]: r for r in records}
    for n, question in enumerate(chosen):
        assert question.answer in by_index[n]["text"] and by_index[n]["error"] is None
    assert by_index[5]["error"].startswith("Error: ")
    assert "6/6" in err
    assert "answers   5 of 6 (1 failed)" in err
    assert "p50" in err and "p95" in err and "tokens" in err


def test_cli_batch_and_a_question_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "a question", "--batch", "questions.txt"])
    assert "either a question or --batch" in capsys.readouterr().err


def test_a_shared_ledger_stops_the_batch_at_its_limit(sim: Simulator, redis_url: str) -> None:
    from llmc.redis_limits import RedisLedger

    async def batch() -> tuple[list[Outcome], int]:
        ledger = RedisLedger("test:batch", max_questions=3, url=redis_url)
        await ledger.reset()
        compiler = simulated_compiler(sim.base_url())
        questions = [q.text for q in WORKLOAD.questions[:5]]
        outcomes = [o async for o in compiler.map(questions, concurrency=2, ledger=ledger)]
        tokens = (await ledger.totals()).tokens
        await ledger.aclose()
        return outcomes, tokens

    outcomes, tokens = asyncio.run(batch())
    answered = [o for o in outcomes if o.ok]
    refused = [o for o in outcomes if not o.ok]
    assert len(answered) == 3 and len(refused) == 2
    assert all(isinstance(o.error, llmc.BudgetExceeded) for o in refused)
    assert tokens == sum(o.tokens for o in answered) > 0  # what the batch spent, in Redis


def test_importing_llmc_needs_neither_ray_nor_redis() -> None:
    import subprocess
    import sys

    code = "import sys, llmc, llmc.executors; print('ray' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
