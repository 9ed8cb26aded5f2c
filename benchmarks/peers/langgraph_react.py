"""LangGraph's prebuilt ReAct agent (``langgraph.prebuilt.create_react_agent``) over
``langchain_openai.ChatOpenAI`` pointed at the simulator.

Parallel tool calls off: the model is bound with ``bind_tools(tools,
parallel_tool_calls=False)``, which sends ``parallel_tool_calls: false`` and so gets one tool
call per turn: a sequential ReAct agent. On: ``bind_tools(tools)``, OpenAI's default, so a
turn may call several tools, which LangGraph's ``ToolNode`` runs concurrently: OpenAI-style
parallel function calling. The model streams (``streaming=True``) and asks for usage
(``stream_usage=True``), as llmc's client does. The tools are the simulator's async functions
wrapped by ``langchain_core.tools.StructuredTool.from_function`` with their Google-style
docstrings parsed into argument descriptions.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..sim.profiles import Profile
from ..sim.world import World
from . import Answerer

__all__ = ["LangGraphReAct"]


class LangGraphReAct:
    """LangGraph's ReAct agent with parallel tool calls on or off.

    Args:
        world: the simulated tools.
        profile: the simulated model (its client name is sent).
        parallel: parallel tool calls on.
        recursion_limit: LangGraph's step limit (a step is one model or tools node).
    """

    def __init__(
        self, world: World, profile: Profile, *, parallel: bool, recursion_limit: int = 200
    ) -> None:
        self.world = world
        self.profile = profile
        self.parallel = parallel
        self.recursion_limit = recursion_limit
        self.key = "parallel-fc" if parallel else "react"
        self.label = (
            "LangGraph ReAct, parallel tool calls" if parallel else "LangGraph ReAct, sequential"
        )
        self.needs = (
            "pip install langgraph langchain-openai; ChatOpenAI(base_url=simulator, "
            "streaming=True, stream_usage=True)"
            + (
                ".bind_tools(tools)"
                if parallel
                else ".bind_tools(tools, parallel_tool_calls=False)"
            )
            + "; create_react_agent(model, tools)"
        )

    def unavailable(self) -> str | None:
        """Why LangGraph cannot run here, if it cannot."""
        try:
            import langchain_openai  # noqa: F401
            import langgraph.prebuilt  # noqa: F401
        except ImportError as error:
            return f"{error.name or error} is not installed (pip install -e '.[peers]')"
        return None

    def prepare(self, base_url: str) -> Answerer:
        """An agent whose model talks to ``base_url``."""
        from langchain_core.tools import StructuredTool
        from langchain_openai import ChatOpenAI

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # create_react_agent is deprecated in LangGraph 1.x
            from langgraph.prebuilt import create_react_agent

        functions = self.world.functions()
        tools = [
            StructuredTool.from_function(coroutine=functions[name], parse_docstring=True)
            for name in ("search", "math")
        ]
        model = ChatOpenAI(
            model=self.profile.client_model,
            base_url=base_url,
            api_key="simulated",
            temperature=0,
            streaming=True,
            stream_usage=True,
            max_retries=0,
        )
        options: dict[str, Any] = {} if self.parallel else {"parallel_tool_calls": False}
        bound = model.bind_tools(tools, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agent = create_react_agent(bound, tools)

        async def answer(question: str) -> str:
            state = await agent.ainvoke(
                {"messages": [{"role": "user", "content": question}]},
                {"recursion_limit": self.recursion_limit},
            )
            return str(state["messages"][-1].content)

        return answer
