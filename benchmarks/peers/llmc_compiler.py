"""llmc itself: :class:`llmc.Compiler` over :class:`llmc.OpenAI` pointed at the simulator.

Fusion off: ``search`` and ``math`` as plain tools. Fusion on: what llmc offers for it today —
``search`` batchable (``@llmc.tool(batch=...)``: calls that meet within the batch window go
out as one request to the simulated batch endpoint) and pure (identical calls in a run share
one execution), ``math`` pure, and the plan-time fused tool ``search_then_math =
llmc.fuse(search, (math, "context"))`` offered to the planner (``Compiler(fused=...)``).
"""

from __future__ import annotations

import llmc

from ..sim.profiles import Profile
from ..sim.world import World
from . import Answerer

__all__ = ["LlmcContender"]


class LlmcContender:
    """llmc with fusion on or off.

    Args:
        world: the simulated tools.
        profile: the simulated model (its client name is sent).
        fused: fusion on.
        max_replans: the compiler's ``max_replans``.
    """

    def __init__(self, world: World, profile: Profile, *, fused: bool, max_replans: int) -> None:
        self.world = world
        self.profile = profile
        self.fused = fused
        self.max_replans = max_replans
        self.key = "llmc-fused" if fused else "llmc"
        self.label = f"llmc (fusion {'on' if fused else 'off'})"
        self.needs = "llmc.OpenAI(model, base_url=simulator); tools from the plain functions" + (
            "; @llmc.tool(pure=True, batch=search_batch) for search, pure math, "
            "Compiler(fused=[llmc.fuse(search, (math, 'context'))])"
            if fused
            else ""
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
        llm = llmc.OpenAI(self.profile.client_model, base_url=base_url, max_retries=0)
        compiler = llmc.Compiler([search, math], llm, fused=fused, max_replans=self.max_replans)

        async def answer(question: str) -> str:
            try:
                return (await compiler.run(question)).text
            finally:
                await llm.aclose()

        return answer
