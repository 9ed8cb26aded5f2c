"""llmc itself: :class:`llmc.Compiler` over :class:`llmc.OpenAI` pointed at the simulator.

Fusion off: ``search`` and ``math`` as plain tools. Fusion on: what llmc offers for it —
``search`` batchable (``@llmc.tool(batch=...)``: calls that meet within the batch window go
out as one request to the simulated batch endpoint) and pure (identical calls in a run share
one execution), ``math`` pure, and the plan-time fused tool ``search_then_math =
llmc.fuse(search, (math, "context"))`` offered to the planner (``Compiler(fused=...)``).

"llmc today" is llmc as it was before plans could answer themselves, reached by options:
the earlier prompts (``peers/llmc_today/``: the planner prompt without ``finish`` and with
signature lines only, the joiner prompt that asks for a thought first),
``plan_answers=False``, ``joiner_observations="all"``, and the HTTP client built on the
first request, inside the timed answer (an ``openai.AsyncOpenAI`` with its default TLS
set-up, given as ``client=``), as ``llmc.OpenAI`` did.

Each answer also reports its latency floor (:func:`latency_floor`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import llmc

from ..sim.profiles import Profile
from ..sim.world import World
from . import Answerer, Reply

__all__ = ["LlmcContender", "latency_floor"]

TODAY = Path(__file__).resolve().parent / "llmc_today"


def latency_floor(answer: llmc.Answer) -> float | None:
    """The earliest moment the answer could exist (a :func:`time.perf_counter` time): the
    end of the plan's stream or the end of the last task the answer needed, whichever is
    later, plus the joiner's call when a joiner answered. None for answers of several
    rounds or without a plan.

    The tasks a plan's ``finish`` needs are those it refers to and theirs, transitively;
    a joiner needs every task.
    """
    if len(answer.rounds) != 1:
        return None
    round_ = answer.rounds[0]
    planner = [s for s in answer.trace.spans if s.kind == "planner" and s.finished is not None]
    if not planner:
        return None
    needed = {task.id for task in round_.ran}
    if answer.answered_by == "plan" and round_.finish is not None:
        by_id = {task.id: task for task in round_.ran}
        needed, todo = set(), list(round_.finish.dependencies)
        while todo:
            task_id = todo.pop()
            if task_id not in needed and task_id in by_id:
                needed.add(task_id)
                todo += by_id[task_id].dependencies
    ends = [answer.trace.tasks[i].finished for i in needed if i in answer.trace.tasks]
    floor = max([planner[-1].finished or 0.0, *(end for end in ends if end is not None)])
    if answer.answered_by == "joiner":
        joins = [s.duration for s in answer.trace.spans if s.kind == "joiner" and s.duration]
        floor += sum(joins)
    return floor


async def _reply(
    compiler: llmc.Compiler, question: str, *, close: Callable[[], Awaitable[None]]
) -> Reply:
    """The compiler's answer to ``question`` with its latency floor; ``close`` (the LLM's
    HTTP client) runs after it, whether it answered or failed."""
    try:
        result = await compiler.run(question)
        return Reply(result.text, latency_floor(result), result.answered_by)
    finally:
        await close()


class LlmcContender:
    """llmc with fusion on or off, as it is or as it was ("today").

    Args:
        world: the simulated tools.
        profile: the simulated model (its client name is sent).
        fused: fusion on.
        max_replans: the compiler's ``max_replans``.
        today: llmc as it was before plans answered themselves (see the module docstring).
    """

    def __init__(
        self, world: World, profile: Profile, *, fused: bool, max_replans: int, today: bool = False
    ) -> None:
        self.world = world
        self.profile = profile
        self.fused = fused
        self.max_replans = max_replans
        self.today = today
        self.key = ("llmc-fused" if fused else "llmc") + ("-today" if today else "")
        self.label = f"llmc (fusion {'on' if fused else 'off'}){', as it was' if today else ''}"
        self.needs = "llmc.OpenAI(model, base_url=simulator); tools from the plain functions" + (
            "; @llmc.tool(pure=True, batch=search_batch) for search, pure math, "
            "Compiler(fused=[llmc.fuse(search, (math, 'context'))])"
            if fused
            else ""
        )
        if today:
            self.needs += (
                "; Compiler(templates=benchmarks/peers/llmc_today, plan_answers=False, "
                "joiner_observations='all'), the client built in the timed answer"
            )

    def unavailable(self) -> str | None:
        """llmc is always there."""
        return None

    def prepare(self, base_url: str) -> Answerer:
        """A compiler whose LLM talks to ``base_url``."""
        functions = self.world.functions()
        fused: list[llmc.FusedTool] = []
        if self.fused:
            search = llmc.tool(pure=True, batch=functions["search_batch"])(functions["search"])
            math = llmc.tool(pure=True)(functions["math"])
            fused.append(llmc.fuse(search, (math, "context")))
        else:
            search, math = llmc.tool(functions["search"]), llmc.tool(functions["math"])
        model = self.profile.client_model
        if not self.today:
            llm = llmc.OpenAI(model, base_url=base_url, max_retries=0)
            compiler = llmc.Compiler([search, math], llm, fused=fused, max_replans=self.max_replans)

            async def answer(question: str) -> Reply:
                return await _reply(compiler, question, close=llm.aclose)

            return answer

        async def answer_as_it_was(question: str) -> Reply:
            import openai  # the client as it was built: on the first request, default TLS

            client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-sim", max_retries=0)
            llm = llmc.OpenAI(model, client=client)
            compiler = llmc.Compiler(
                [search, math],
                llm,
                fused=fused,
                max_replans=self.max_replans,
                templates=TODAY,
                plan_answers=False,
                joiner_observations="all",
            )
            return await _reply(compiler, question, close=client.close)

        return answer_as_it_was
