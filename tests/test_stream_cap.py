"""An endpoint that ignores ``max_tokens`` is cut off at the call's cap, as it streams."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import llmc
from llmc import Budget, BudgetExceeded, Compiler
from llmc.budget import Estimate
from llmc.llm import GenerateOptions, OpenAI, generate
from llmc.testing import ScriptedLLM, ScriptedOpenAIServer

HI: list[llmc.llm.Message] = [{"role": "user", "content": "hi"}]
FLOOD = "Thought: " + "words and more words " * 5000  # about 100 kB, whatever was asked


@llmc.tool
def lookup(topic: str) -> str:
    """Look a topic up.

    Args:
        topic: what to look up.
    """
    return f"all about {topic}"


async def test_a_reply_past_max_tokens_is_cut_and_the_request_closed() -> None:
    async with ScriptedOpenAIServer([FLOOD], honour_max_tokens=False, chunk_size=64) as server:
        llm = OpenAI("m", base_url=server.base_url, api_key="sk-test")
        reply = await generate(llm, HI, GenerateOptions(max_tokens=100))
        await llm.aclose()
    assert reply.finish_reason == "length"
    assert Estimate().count(reply.text) <= 100 * 1.5 + 16
    assert len(reply.text) < len(FLOOD) / 20


@settings(max_examples=40, deadline=None)
@given(
    cap=st.integers(min_value=1, max_value=400),
    pieces=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=200),
)
async def test_a_reply_within_its_cap_is_never_cut_and_one_past_it_always_is(cap, pieces) -> None:
    counter = llmc.budget.counter_for(ScriptedLLM([]))
    text = "".join(pieces)
    llm = ScriptedLLM([text], chunk_size=[len(p) for p in pieces[:-1]] or 8)
    reply = await generate(llm, HI, GenerateOptions(max_tokens=cap))
    read = sum(counter.count(p) for p in pieces)  # what the cap counts, piece by piece
    if counter.count(text) <= cap and read <= cap:
        assert reply.text == text
    assert counter.count(reply.text) <= cap + max(16, cap // 2) + 30


async def test_a_budget_holds_against_an_endpoint_that_ignores_max_tokens() -> None:
    plan = '1. lookup("the Mariana Trench")\njoin()'
    async with ScriptedOpenAIServer(
        [plan, FLOOD, FLOOD, FLOOD], honour_max_tokens=False, chunk_size=64
    ) as server:
        llm = OpenAI("m", base_url=server.base_url, api_key="sk-test")
        try:
            answer = await Compiler([lookup], llm, budget=Budget(max_tokens=2000)).run("How deep?")
        except BudgetExceeded as exc:
            assert exc.limit == "tokens" and exc.answer is not None
            answer = exc.answer
        finally:
            await llm.aclose()
    used = answer.usage.total_tokens
    assert used <= 2000 * 1.5 + 200, used  # it was 12-fold
