"""The contenders: llmc and its peers, each behind one small adapter.

Every adapter builds its framework's agent over the same simulated tools
(:meth:`benchmarks.sim.world.World.functions`) and an OpenAI-compatible client pointed at
the simulator, and answers one question per :meth:`Contender.prepare` call. Peers are
optional (``pip install -e '.[peers]'``); one that cannot be imported says why in
:meth:`Contender.unavailable` and the run goes on without it.

- ``llmc``: llmc's Compiler with plain tools (fusion off);
- ``llmc-today``: the same, as llmc was before plans answered themselves (by options: the
  earlier prompts, no plan answers, every observation whole, the client built on the first
  request);
- ``llmc-fused``: llmc with fusion on: a batchable, pure (deduplicated) search, a pure math
  tool, and the plan-time fused tool ``search_then_math``;
- ``react``: LangGraph's prebuilt ReAct agent over ``ChatOpenAI``, parallel tool calls off;
- ``parallel-fc``: the same agent with parallel tool calls on (OpenAI's default);
- ``llamaindex``: LlamaIndex's LLMCompiler agent pack (``llama-index-packs-agents-llm-compiler``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ..sim.profiles import Profile
from ..sim.world import World

__all__ = ["CONTENDERS", "Answerer", "Contender", "Reply", "make_contender"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer with what a contender knows about how it came.

    Attributes:
        text: the answer.
        floor: the earliest moment (:func:`time.perf_counter`) the answer could have
            existed, if the contender can tell (llmc can; see
            :func:`benchmarks.peers.llmc_compiler.latency_floor`).
        answered_by: who wrote the answer (llmc: ``"plan"`` or ``"joiner"``).
    """

    text: str
    floor: float | None = None
    answered_by: str | None = None


#: Answers one question; returns the final answer's text, or a :class:`Reply`.
Answerer = Callable[[str], Awaitable[str | Reply]]


class Contender(Protocol):
    """One framework configuration under test.

    Attributes:
        key: a short name for tables, e.g. ``"react"``.
        label: a longer name for reports.
        needs: what it took to run this contender against the simulator, in a sentence.
    """

    key: str
    label: str
    needs: str

    def unavailable(self) -> str | None:
        """Why it cannot run here (a missing package, ...), or None when it can."""
        ...

    def prepare(self, base_url: str) -> Answerer:
        """A fresh agent whose LLM client talks to ``base_url``; build everything here, so
        that only answering is timed."""
        ...


#: Every contender's key, in table order.
CONTENDERS: tuple[str, ...] = (
    "llmc",
    "llmc-today",
    "llmc-fused",
    "react",
    "parallel-fc",
    "llamaindex",
)


def make_contender(key: str, world: World, profile: Profile, *, max_replans: int = 2) -> Contender:
    """The contender named ``key``.

    Raises:
        ValueError: no such contender.
    """
    if key in ("llmc", "llmc-fused", "llmc-today", "llmc-fused-today"):
        from .llmc_compiler import LlmcContender

        return LlmcContender(
            world,
            profile,
            fused=key.startswith("llmc-fused"),
            max_replans=max_replans,
            today=key.endswith("-today"),
        )
    if key in ("react", "parallel-fc"):
        from .langgraph_react import LangGraphReAct

        return LangGraphReAct(world, profile, parallel=key == "parallel-fc")
    if key == "llamaindex":
        from .llamaindex_compiler import LlamaIndexCompiler

        return LlamaIndexCompiler(world, profile)
    raise ValueError(f"unknown contender {key!r}; choose from {', '.join(CONTENDERS)}")
