"""LlamaIndex's LLMCompiler agent pack (``llama-index-packs-agents-llm-compiler``) over
``llama_index.llms.openai.OpenAI`` pointed at the simulator (``api_base``).

The pack's ``LLMCompilerAgentPack`` is ``AgentRunner(LLMCompilerAgentWorker.from_tools(tools,
llm=llm, verbose=True))``; this adapter builds the same two objects with ``verbose=False``, so
that printing every plan and observation is not timed. The worker plans with one
non-streaming chat call, parses the whole plan, runs it level by level (``asyncio.gather``
per set of ready tasks, then a 10 ms sleep) and joins with a synchronous call. Its
``OpenAI`` class accepts only model names it knows, so it is sent the profile's
``client_model`` (the simulator ignores names). Tools are the simulator's async functions as
``FunctionTool.from_defaults(fn, async_fn=fn)``.
"""

from __future__ import annotations

import contextlib
import io

from ..sim.profiles import Profile
from ..sim.world import World
from . import Answerer

__all__ = ["LlamaIndexCompiler"]


def _import_quietly() -> None:
    """Import LlamaIndex, hiding NLTK's complaint that it cannot download data offline."""
    noise = io.StringIO()
    with contextlib.redirect_stderr(noise):
        import llama_index.core  # noqa: F401


class LlamaIndexCompiler:
    """LlamaIndex's LLMCompiler agent.

    Args:
        world: the simulated tools.
        profile: the simulated model.
    """

    key = "llamaindex"
    label = "LlamaIndex LLMCompiler pack"

    def __init__(self, world: World, profile: Profile) -> None:
        self.world = world
        self.profile = profile
        self.needs = (
            "pip install llama-index-packs-agents-llm-compiler llama-index-llms-openai; "
            "OpenAI(model=<a name LlamaIndex knows>, api_base=simulator); "
            "AgentRunner(LLMCompilerAgentWorker.from_tools(tools, llm=llm)) as the pack builds "
            "it, verbose off"
        )

    def unavailable(self) -> str | None:
        """Why the pack cannot run here, if it cannot."""
        try:
            _import_quietly()
            import llama_index.llms.openai
            import llama_index.packs.agents_llm_compiler  # noqa: F401
        except ImportError as error:
            return f"{error.name or error} is not installed (pip install -e '.[peers]')"
        return None

    def prepare(self, base_url: str) -> Answerer:
        """An agent whose LLM talks to ``base_url``."""
        _import_quietly()
        from llama_index.core.agent import AgentRunner
        from llama_index.core.tools import FunctionTool
        from llama_index.llms.openai import OpenAI
        from llama_index.packs.agents_llm_compiler.step import LLMCompilerAgentWorker

        functions = self.world.functions()
        tools = [
            FunctionTool.from_defaults(fn=functions[name], async_fn=functions[name], name=name)
            for name in ("search", "math")
        ]
        llm = OpenAI(
            model=self.profile.client_model,
            api_base=base_url,
            api_key="simulated",
            temperature=0,
            max_retries=0,
        )
        worker = LLMCompilerAgentWorker.from_tools(tools, llm=llm, verbose=False)
        agent = AgentRunner(worker)

        async def answer(question: str) -> str:
            return str(await agent.achat(question))

        return answer
