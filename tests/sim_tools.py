"""The simulator's tools (``search``, ``math``) as an llmc tool pack, a hundred times faster
than configured; used by the batch tests, the ``llmc run --batch`` test and Ray's actors."""

from __future__ import annotations

import llmc
from benchmarks.sim.workloads import synthetic
from benchmarks.sim.world import World

#: The batch tests' questions. The world learns their answers here, not only where the
#: simulator is started, because a pack loaded by path or on a Ray actor has a world of its own.
WORKLOAD = synthetic("fanout", 50)
WORLD = World(time_scale=0.01)
WORLD.answer(WORKLOAD.questions)
_functions = WORLD.functions()

search = llmc.tool(_functions["search"])
math = llmc.tool(_functions["math"])


def simulated_compiler(base_url: str) -> llmc.Compiler:
    """A compiler over the simulated tools whose LLM is the simulator at ``base_url``."""
    llm = llmc.OpenAI("gpt-4o-mini", base_url=base_url, api_key="sk-sim", max_retries=0)
    return llmc.Compiler([search, math], llm, max_replans=1)
