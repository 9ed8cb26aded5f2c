"""One metered LLM call (llmc.budget.metered_stream) and the run context the planner and the
joiner share: spans, budget checks, usage and events, however a call ends."""

from __future__ import annotations

import time

import pytest

from llmc import Budget, BudgetExceeded, GenerateOptions, LLMError, Task
from llmc.budget import LLMMeter, Meter, metered_stream
from llmc.context import RunContext
from llmc.joiner import AnswerText, Joiner, JoinerText
from llmc.llm.base import Message
from llmc.planner import Planner, PlanText
from llmc.testing import EventRecorder, Reply, ScriptedLLM
from llmc.tool import tool
from llmc.trace import Trace

MESSAGES: list[Message] = [{"role": "user", "content": "How long is the Nile?"}]


@tool
def length(river: str) -> int:
    """The length of a river in km.

    Args:
        river: its name.
    """
    return len(river) * 1000


def test_the_meter_is_what_a_metered_call_needs() -> None:
    assert isinstance(Meter(), LLMMeter)


async def test_a_call_is_a_span_with_its_usage_in_the_meter() -> None:
    llm = ScriptedLLM([Reply("6650 km", prompt_tokens=11, completion_tokens=3)], chunk_size=2)
    meter, trace = Meter(), Trace("r", time.perf_counter())
    async with metered_stream(
        llm, MESSAGES, GenerateOptions(), kind="checker", label="check 1", trace=trace, meter=meter
    ) as reply:
        pieces = [piece async for piece in reply]
    assert "".join(pieces) == reply.text == "6650 km" and len(pieces) == 4
    (span,) = trace.spans
    assert (span.kind, span.label, span.usage) == ("checker", "check 1", meter.usage)
    assert meter.usage.total_tokens == 14 and meter.by_kind["checker"].calls == 1
    assert span.started <= (span.first_output or 0) <= (span.finished or 0)


async def test_a_refused_call_is_never_made_and_leaves_no_span() -> None:
    llm = ScriptedLLM(["x"])
    meter, trace = Meter(Budget(max_llm_calls=0)), Trace("r", time.perf_counter())
    with pytest.raises(BudgetExceeded):
        async with metered_stream(
            llm, MESSAGES, GenerateOptions(), kind="joiner", label="j", trace=trace, meter=meter
        ):
            raise AssertionError("the body must not run")
    assert not llm.calls and not trace.spans and meter.usage.calls == 0


async def test_a_failed_call_still_ends_its_span_and_is_counted() -> None:
    llm = ScriptedLLM([LLMError("the endpoint went away")])
    meter, trace = Meter(), Trace("r", time.perf_counter())
    with pytest.raises(LLMError, match="went away"):
        async with metered_stream(
            llm, MESSAGES, GenerateOptions(), kind="planner", label="p", trace=trace, meter=meter
        ) as reply:
            await reply.read()
    (span,) = trace.spans
    assert span.finished is not None and span.first_output is None
    assert meter.usage.calls == 1 and meter.usage.completion_tokens == 0  # counted by llmc


async def test_drain_reads_on_for_the_usage_without_keeping_the_text() -> None:
    llm = ScriptedLLM([Reply("ab" * 20, prompt_tokens=5, completion_tokens=9)], chunk_size=4)
    async with metered_stream(llm, MESSAGES, GenerateOptions(), kind="k", label="l") as reply:
        first = await anext(reply)
        await reply.drain()
    assert reply.text == first == "abab"
    assert reply.span.usage is not None and reply.span.usage.completion_tokens == 9


async def test_the_planner_and_the_joiner_emit_their_events_into_the_run() -> None:
    events = EventRecorder()
    meter, trace = Meter(Budget(), run_id="r7"), Trace("r7", time.perf_counter())
    run = RunContext("r7", trace, meter, events)
    planner = Planner(ScriptedLLM(['1. length("Nile")\njoin()\n'], chunk_size=5), [length])
    plan = planner.stream("How long is the Nile?", number=3, run=run)
    assert [task.id async for task in plan] == [1] == [task.id for task in plan.tasks]
    assert plan.text.startswith('1. length("Nile")') and plan.finish is None
    texts = events.of_type(PlanText)
    assert "".join(e.text for e in texts) == plan.text
    assert {(e.run_id, e.round) for e in texts} == {("r7", 3)}

    joiner = Joiner(ScriptedLLM(["Thought: known.\nAction: Finish(6650 km)"], chunk_size=6))
    decision = await joiner.decide("How long?", plan.tasks, {1: "6650"}, number=3, run=run)
    assert decision.text == "6650 km"
    assert "".join(e.text for e in events.of_type(JoinerText)).endswith("Finish(6650 km)")
    assert "".join(e.text for e in events.of_type(AnswerText)) == "6650 km"
    assert [span.label for span in trace.spans] == ["plan 3", "join 3"]
    assert meter.usage.calls == 2


async def test_a_replayed_plan_streams_its_tasks_and_knows_its_answer_at_once() -> None:
    planner = Planner(ScriptedLLM([]), [length])
    plan = planner.replay('1. length("Nile")\n2. length("Congo")\nfinish($1)\n')
    assert plan is not None and plan.finish is not None and plan.finish.dependencies == {1}
    assert [task async for task in plan] == [
        Task(1, "length", ("Nile",)),
        Task(2, "length", ("Congo",)),
    ]
    assert set(plan.parsed_at) == {1, 2}
    assert planner.replay('1. unknown_tool("x")\njoin()\n') is None
