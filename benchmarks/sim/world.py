"""Simulated tools: deterministic outputs, seeded latencies, a record of every call.

Every contender gets the same two tool functions (:meth:`World.functions`), wrapped as its
framework needs:

- ``search(query, context=None)``: an encyclopedia lookup. Its output is a paragraph of
  about ``search_chars`` characters that holds one number (the *fact* a later step needs).
  Latency: lognormal with median ``search_median`` (300 ms) and shape ``search_sigma``.
- ``math(problem, context=None)``: arithmetic over earlier results; its output is a number,
  or, for a question's final computation (:meth:`World.answer`), the question's answer.
  Latency: lognormal, median 5 ms.

Outputs depend only on the seed and the first argument (the query or the problem), never on
``context``: frameworks pass earlier results in different forms (llmc the output itself,
LlamaIndex its text, a ReAct agent the number it read), and all of them must see the same
outputs. A call's latency depends on the seed, the run number and the first argument, so
every contender meets the same world in a run: one contender's bad luck is everyone's.

``search_batch`` is the same search as one request for many queries (what llmc's
dispatch-time fusion sends): it takes as long as its slowest query would alone, plus 2 ms
per query after the first. Batching therefore never wins on latency here; it saves requests.
"""

from __future__ import annotations

import asyncio
import math as _math
import random
import time
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .workloads import Question

__all__ = ["ToolCall", "World"]

_TEXT = (
    "the of and in to a is was for on as with by at from its an which that it be are this "
    "or has had also first largest known area named since during between most other about "
    "located one two three century region river mountain history people found record world "
    "measured height depth length population built estimated average survey official sea "
    "level national park city island coast century film director story drama comedy award "
    "released critics audience studio character novel adapted festival sequel"
)
_WORDS = _TEXT.split()


@dataclass(slots=True)
class ToolCall:
    """One request a simulated tool served.

    Attributes:
        tool: ``"search"``, ``"math"`` or ``"search_batch"``.
        keys: the first argument of each call the request served (one, except batches).
        started: when it started (:func:`time.perf_counter`).
        finished: when it returned.
    """

    tool: str
    keys: tuple[str, ...]
    started: float
    finished: float = 0.0


@dataclass
class World:
    """The simulated tools' outputs and latencies, and the calls they served.

    Attributes:
        seed: fixes every output and latency.
        run: the run number; latencies change with it, outputs do not.
        search_median: median seconds of a search.
        search_sigma: the lognormal shape of search latencies.
        math_median: median seconds of a math call.
        math_sigma: the lognormal shape of math latencies.
        search_chars: about how long a search output is.
        time_scale: every latency is multiplied by it (1.0: as configured).
        calls: the requests served since the last :meth:`reset`.
        answers: the output of each question's final computation, by its problem text.
    """

    seed: int = 0
    run: int = 0
    search_median: float = 0.300
    search_sigma: float = 0.4
    math_median: float = 0.005
    math_sigma: float = 0.3
    search_chars: int = 600
    time_scale: float = 1.0
    calls: list[ToolCall] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)

    def answer(self, questions: Iterable[Question]) -> None:
        """Let each question's final computation (its ``answer_task``) return its answer,
        as the computation that combines the results does.

        Raises:
            ValueError: two questions' final computations have the same problem text but
                different answers.
        """
        for question in questions:
            if question.answer_task is None:
                continue
            key = question.task(question.answer_task).key
            if self.answers.setdefault(key, question.answer) != question.answer:
                raise ValueError(f"two questions end in the same computation {key!r}")

    def reset(self) -> list[ToolCall]:
        """Forget the calls recorded so far; return them."""
        calls, self.calls = self.calls, []
        return calls

    # -- outputs

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def search_fact(self, query: str) -> str:
        """The number a search for ``query`` reports, as written in its output."""
        return f"{self._rng('fact', query).randint(100, 20_000):,}"

    def search_output(self, query: str) -> str:
        """The paragraph a search for ``query`` returns (deterministic)."""
        rng = self._rng("search", query)
        fact = self.search_fact(query)
        words: list[str] = []
        size = len(query) + len(fact) + 40
        while size < self.search_chars:
            word = rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        middle = len(words) // 3
        head, tail = " ".join(words[:middle]), " ".join(words[middle:])
        return f"{query}: {head}; its measured value is {fact} by survey; {tail}."

    def math_output(self, problem: str) -> str:
        """The number a math call on ``problem`` returns (deterministic)."""
        if problem in self.answers:
            return self.answers[problem]
        return f"{self._rng('math', problem).uniform(1, 10_000):.2f}"

    def output(self, tool: str, key: str) -> str:
        """The output of ``tool`` for its first argument ``key``."""
        return self.search_output(key) if tool == "search" else self.math_output(key)

    def fact(self, tool: str, key: str) -> str:
        """What a reader takes from an output: the search's number, or the math result."""
        return self.search_fact(key) if tool == "search" else self.math_output(key)

    # -- latencies

    def latency(self, tool: str, key: str) -> float:
        """Seconds a call of ``tool`` with first argument ``key`` takes in this run."""
        median, sigma = (
            (self.search_median, self.search_sigma)
            if tool == "search"
            else (self.math_median, self.math_sigma)
        )
        draw = self._rng("latency", self.run, tool, key).lognormvariate(_math.log(median), sigma)
        return draw * self.time_scale

    def batch_latency(self, keys: list[str]) -> float:
        """Seconds one batched search request for ``keys`` takes in this run."""
        slowest = max((self.latency("search", key) for key in keys), default=0.0)
        return slowest + 0.002 * max(0, len(keys) - 1) * self.time_scale

    async def _serve(self, tool: str, keys: list[str], seconds: float) -> None:
        record = ToolCall(tool, tuple(keys), time.perf_counter())
        self.calls.append(record)
        await asyncio.sleep(seconds)
        record.finished = time.perf_counter()

    # -- the tool functions

    def functions(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """``search``, ``math`` and ``search_batch`` as plain async functions with docstrings
        and type hints, for every framework to wrap."""
        world = self

        async def search(query: str, context: list[str] | None = None) -> str:
            """Search an encyclopedia and return the best article's first paragraph.

            Args:
                query: what to look up, e.g. "Mariana Trench".
                context: earlier results the query builds on, if any.
            """
            query = str(query)
            await world._serve("search", [query], world.latency("search", query))
            return world.search_output(query)

        async def math(problem: str, context: list[str] | str | None = None) -> str:
            """Solve an arithmetic problem with the numbers found in earlier results.

            Args:
                problem: the problem in words or symbols, e.g. "depth of the trench * 0.8".
                context: earlier results (one text or a list) that hold the numbers.
            """
            problem = str(problem)
            await world._serve("math", [problem], world.latency("math", problem))
            return world.math_output(problem)

        async def search_batch(calls: list[dict[str, Any]]) -> list[str]:
            """Search for many queries in one request (a list of ``search`` arguments)."""
            keys = [str(call["query"]) for call in calls]
            await world._serve("search_batch", keys, world.batch_latency(keys))
            return [world.search_output(key) for key in keys]

        functions: dict[str, Callable[..., Awaitable[Any]]] = {
            "search": search,
            "math": math,
            "search_batch": search_batch,
        }
        for function in functions.values():  # real types, for libraries that read them raw
            function.__annotations__ = typing.get_type_hints(function)
        return functions
