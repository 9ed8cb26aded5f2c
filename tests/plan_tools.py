"""The two plain tools that the plan tests write plans for: a search and a math step, in the
style of the LLMCompiler paper's ParallelQA exemplars. Their bodies never run there."""

from __future__ import annotations

import llmc


@llmc.tool
def search(query: str) -> str:
    """Search the encyclopedia."""
    return query


@llmc.tool
def math(problem: str, context: list[str] | None = None) -> float:
    """Solve a math problem, using earlier results as context."""
    return 0.0


TOOLS = [search, math]
