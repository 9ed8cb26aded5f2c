"""Many questions at once: bounded concurrency, answers as they finish, a batch's summary.

:meth:`llmc.Compiler.map` answers a batch on this process; :class:`llmc.ray_pool.RayPool`
answers it on a pool of Ray actors, each question on one of them. Both yield one
:class:`Outcome` per question in the order they finish, and :class:`BatchSummary` sums up a
batch (answers, failures, tokens, cost, latency percentiles).

A failed question is an outcome with its ``error``, not an exception that ends the batch;
cancelling the iteration (leaving the ``async for`` early) cancels the questions in flight.
With a shared :class:`~llmc.redis_limits.RedisLedger`, a question starts only while the
batch is within the ledger's limits; the questions refused are outcomes with a
:class:`~llmc.errors.BudgetExceeded` error.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BudgetExceeded
from .result import error_text

if TYPE_CHECKING:
    from .compiler import Answer
    from .redis_limits import RedisLedger


@dataclass(slots=True)
class Outcome:
    """One question of a batch, answered or failed.

    Attributes:
        index: the question's place in the batch (0 for the first).
        question: the question.
        text: the answer (empty when it failed).
        error: what went wrong, or None.
        finished: True when the joiner answered within its replans.
        latency: seconds from the question's start to its outcome.
        tokens: LLM tokens it used (input and output).
        cost: US dollars (None when a model has no price).
        llm_calls: LLM calls it made.
        answer: the whole :class:`~llmc.compiler.Answer`, when it was answered on this
            process (an outcome from a Ray actor carries the figures only).
    """

    index: int
    question: str
    text: str = ""
    error: BaseException | None = None
    finished: bool = False
    latency: float = 0.0
    tokens: int = 0
    cost: float | None = None
    llm_calls: int = 0
    answer: Answer | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the question was answered (``finished`` or not) without an error."""
        return self.error is None


def outcome_of(
    index: int,
    question: str,
    answer: Answer | None,
    error: BaseException | None,
    *,
    keep_answer: bool = True,
) -> Outcome:
    """An :class:`Outcome` from an answer or an error (a partial answer counts its usage)."""
    if answer is None and isinstance(error, BudgetExceeded):
        answer = error.answer
    if answer is None:
        return Outcome(index, question, error=error)
    usage = answer.usage
    return Outcome(
        index,
        question,
        text=answer.text if error is None else "",
        error=error,
        finished=answer.finished and error is None,
        tokens=usage.total_tokens,
        cost=answer.cost,
        llm_calls=answer.llm_calls,
        answer=answer if keep_answer else None,
    )


async def answer_all(
    questions: Iterable[str],
    answer_one: Callable[[int, str], Awaitable[Outcome]],
    *,
    concurrency: int,
    ledger: RedisLedger | None = None,
) -> AsyncGenerator[Outcome, None]:
    """Run ``answer_one`` on each question, at most ``concurrency`` at once; yield outcomes
    as they finish. The loop both :meth:`Compiler.map` and :class:`RayPool` use.

    ``answer_one`` returns an outcome for every question (errors included); an exception
    from it becomes the question's error. Leaving the iteration early cancels the rest.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    pending = iter(enumerate(questions))
    running: set[asyncio.Task[None]] = set()
    finished: asyncio.Queue[Outcome] = asyncio.Queue()  # in the order they finish

    async def guarded(index: int, question: str) -> None:
        start = time.perf_counter()
        try:
            if ledger is not None:
                await ledger.admit()
            outcome = await answer_one(index, question)
            outcome.latency = time.perf_counter() - start  # as the caller waited for it
            if ledger is not None and outcome.tokens:
                await ledger.spend(outcome.tokens, outcome.cost)
        except Exception as exc:
            outcome = Outcome(index, question, error=exc, latency=time.perf_counter() - start)
        finished.put_nowait(outcome)

    owed = 0  # questions started whose outcome was not yielded yet

    def refill() -> None:
        nonlocal owed
        while owed < concurrency:
            item = next(pending, None)
            if item is None:
                return
            task = asyncio.ensure_future(guarded(*item))
            running.add(task)
            task.add_done_callback(running.discard)
            owed += 1

    try:
        refill()
        while owed:
            outcome = await finished.get()
            owed -= 1
            refill()
            yield outcome
    finally:
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.wait(list(running))


def _percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of values (0 when there are none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a batch came to.

    Attributes:
        questions: how many outcomes.
        answers: questions answered without an error.
        failures: questions that failed.
        tokens: LLM tokens of all questions together.
        cost: US dollars together (None when some question had no price).
        p50: median latency, seconds.
        p95: 95th percentile latency, seconds.
        elapsed: seconds from the first question's start to the last outcome.
    """

    questions: int
    answers: int
    failures: int
    tokens: int
    cost: float | None
    p50: float
    p95: float
    elapsed: float

    @classmethod
    def of(cls, outcomes: Sequence[Outcome], elapsed: float) -> BatchSummary:
        """The summary of a batch's outcomes, which took ``elapsed`` seconds."""
        latencies = [o.latency for o in outcomes]
        costs = [o.cost for o in outcomes if o.ok]
        return cls(
            questions=len(outcomes),
            answers=sum(o.ok for o in outcomes),
            failures=sum(not o.ok for o in outcomes),
            tokens=sum(o.tokens for o in outcomes),
            cost=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
            p50=_percentile(latencies, 0.50),
            p95=_percentile(latencies, 0.95),
            elapsed=elapsed,
        )

    @property
    def per_second(self) -> float:
        """Questions per second over the batch."""
        return self.questions / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        """The summary as lines of text, for a terminal."""
        cost = "n/a (no price)" if self.cost is None else f"${self.cost:.4f}"
        return [
            f"answers   {self.answers} of {self.questions} ({self.failures} failed)",
            f"tokens    {self.tokens:,}",
            f"cost      {cost}",
            f"latency   p50 {self.p50:.2f} s, p95 {self.p95:.2f} s",
            f"elapsed   {self.elapsed:.2f} s ({self.per_second:.2f} questions/s)",
        ]


def failure_line(outcome: Outcome) -> str:
    """One line naming a failed question and its error."""
    error = error_text(outcome.error) if outcome.error is not None else "no error"
    return f"question {outcome.index + 1}: {error}"


def as_outcome_fields(outcome: Outcome) -> dict[str, Any]:
    """An outcome's figures as JSON-ready fields (the error as text)."""
    return {
        "index": outcome.index,
        "question": outcome.question,
        "text": outcome.text,
        "error": error_text(outcome.error) if outcome.error is not None else None,
        "finished": outcome.finished,
        "latency": outcome.latency,
        "tokens": outcome.tokens,
        "cost": outcome.cost,
        "llm_calls": outcome.llm_calls,
    }
