"""Budgets in whole runs: the compiler and run_plan with llmc.Budget."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest

import llmc
from llmc import Budget, BudgetExceeded, Compiler, LLMUsage
from llmc.budget import Estimate, Meter, Price, Summarize, count_messages
from llmc.llm.base import Message
from llmc.testing import EventRecorder, ScriptedLLM
from llmc.trace import TaskStatus

MEGABYTE = ("lorem ipsum dolor sit amet, 12345 consectetur adipiscing elit; " * 16_000)[:1_000_000]


@llmc.tool
async def fetch(url: str) -> str:
    """Fetch a page: a megabyte of text that starts and ends with the address.

    Args:
        url: the address.
    """
    return f"<<{url} starts>> {MEGABYTE} <<{url} ends>>"


@llmc.tool(observation_tokens=40)
async def logs(name: str) -> str:
    """Read a log: long, but its tool limits what the joiner sees.

    Args:
        name: which log.
    """
    return f"log {name}: " + "event ok. " * 2000


@llmc.tool
async def small(x: int) -> int:
    """Double a number.

    Args:
        x: the number.
    """
    return 2 * x


FETCH_PLAN = '1. fetch("a")\n2. fetch("b")\n3. small(21)\njoin()\n<END_OF_PLAN>'
FINISH = "Thought: the pages are read.\nAction: Finish(done)"


def joiner_calls(llm: ScriptedLLM) -> list[Sequence[Message]]:
    return [c.messages for c in llm.calls if "Finish" in c.messages[0]["content"]]


async def test_a_joiner_prompt_with_megabyte_observations_fits_its_budget_and_window() -> None:
    llm = ScriptedLLM([FETCH_PLAN, FINISH])
    budget = Budget(joiner_input=3000, context_window=8000)
    answer = await Compiler([fetch, small], llm, budget=budget).run("What do the pages say?")
    assert answer.text == "done"
    counter = answer.meter.counter(llm) if answer.meter else None
    assert counter is not None and not counter.exact  # the scripted model has no tokenizer
    (prompt,) = joiner_calls(llm)
    assert count_messages(counter, prompt) <= 3000
    user = prompt[1]["content"]
    assert "<<a starts>>" in user and "<<a ends>>" in user  # head and tail kept
    assert "<<b starts>>" in user and "<<b ends>>" in user
    assert user.count("characters cut to fit a budget of") == 2
    assert "Observation: 42" in user  # a small observation is whole
    # the plan picture shows each cut observation's share
    plan = answer.plan
    assert set(plan.budgets) == {1, 2}
    assert "tok" in plan.to_svg()


async def test_without_a_budget_the_joiner_prompt_still_fits_the_context_window() -> None:
    llm = ScriptedLLM([FETCH_PLAN, FINISH])
    answer = await Compiler([fetch, small], llm).run("What do the pages say?")
    (prompt,) = joiner_calls(llm)
    assert answer.meter is not None
    window = answer.meter.window(llm)
    assert count_messages(answer.meter.counter(llm), prompt) <= window
    # the reply keeps its share of the window
    assert count_messages(answer.meter.counter(llm), prompt) <= window * 0.85


async def test_a_small_context_window_is_never_exceeded_with_an_exact_counter() -> None:
    class Words:
        name = "words"
        exact = True

        def count(self, text: str) -> int:
            return len(text.split())

    llm = ScriptedLLM([FETCH_PLAN, FINISH])
    budget = Budget(context_window=1500, joiner_output=200, counter=Words())
    await Compiler([fetch, small], llm, budget=budget).run("What do the pages say?")
    (prompt,) = joiner_calls(llm)
    assert count_messages(Words(), prompt) <= 1500 - 200
    joiner = next(c for c in llm.calls if c.messages == prompt)
    assert joiner.options.max_tokens == 200


async def test_per_tool_observation_budgets_and_their_overrides() -> None:
    plan = '1. logs("app")\n2. logs("db")\n3. fetch("a")\njoin()\n<END_OF_PLAN>'
    counter = Estimate(per_char=0.25)
    llm = ScriptedLLM([plan, FINISH, plan, FINISH])
    compiler = Compiler([logs, fetch], llm, budget=Budget(counter=counter))
    answer = await compiler.run("Anything wrong?")
    user = joiner_calls(llm)[0][1]["content"]
    observations = user.split("Observation: ")[1:]
    assert counter.count(observations[0].split("\n2.")[0]) <= 40  # the tool's own cap
    assert answer.plan.budgets[1] == answer.plan.budgets[2] == 40
    assert int(answer.plan.budgets[3]) > 1000  # fetch: a fair share of what is left
    # a run's mapping overrides the tool's own cap; a number applies to the other tools
    answer = await compiler.run(
        "Anything wrong?", budget=Budget(counter=counter, observation_tokens={"logs": 25})
    )
    assert answer.plan.budgets[1] == 25
    answer = await Compiler([logs, fetch], ScriptedLLM([plan, FINISH])).run(
        "Anything wrong?", budget=Budget(counter=counter, observation_tokens=100)
    )
    assert answer.plan.budgets == {1: 40, 2: 40, 3: 100}


async def test_a_run_over_its_tool_call_budget_stops_with_its_partial_answer() -> None:
    plan = "1. small(1)\n2. small(2)\n3. small(3)\n4. small($1)\njoin()\n<END_OF_PLAN>"
    llm = ScriptedLLM([plan, FINISH])
    compiler = Compiler([small], llm, budget=Budget(max_tool_calls=2))
    with pytest.raises(BudgetExceeded) as caught:
        await compiler.run("Double them")
    error = caught.value
    assert error.limit == "tool_calls" and error.maximum == 2 and error.used == 2
    answer = error.answer
    assert answer is not None and error.partial is answer
    assert not answer.finished and answer.text == ""
    assert answer.results[0].outputs == {1: 2, 2: 4}  # what ran is kept
    assert answer.results[0].status(3) is TaskStatus.FAILED
    assert isinstance(answer.results[0].trace.tasks[3].error, BudgetExceeded)
    assert [t.id for t in answer.rounds[0].tasks] == [1, 2, 3, 4]
    assert answer.usage.calls == 1  # the planner's call; no joiner call was made
    assert answer.trace.finished is not None
    assert len(llm.calls) == 1


async def test_a_run_over_its_llm_call_budget_keeps_every_observation() -> None:
    llm = ScriptedLLM(["1. small(1)\n2. small(2)\njoin()\n<END_OF_PLAN>", FINISH])
    with pytest.raises(BudgetExceeded) as caught:
        await Compiler([small], llm, budget=Budget(max_llm_calls=1)).run("Double them")
    answer = caught.value.answer
    assert caught.value.limit == "llm_calls"
    assert answer.rounds[0].observations == {1: "2", 2: "4"}
    assert answer.llm_calls == 1 and len(llm.calls) == 1


async def test_a_run_over_its_token_budget_stops_before_the_call() -> None:
    llm = ScriptedLLM(["1. small(1)\njoin()\n<END_OF_PLAN>", FINISH])
    counter = Estimate(per_char=0.25)
    planner_prompt = count_messages(counter, Compiler([small], llm).planner.messages("q?"))
    limit = planner_prompt + 60  # the planner fits; planner + joiner does not
    compiler = Compiler([small], llm, budget=Budget(max_tokens=limit, counter=counter))
    with pytest.raises(BudgetExceeded) as caught:
        await compiler.run("q?")
    assert caught.value.limit == "tokens" and caught.value.maximum == limit
    assert caught.value.answer.usage.total_tokens <= limit
    assert caught.value.answer.results[0].outputs == {1: 2}
    assert len(llm.calls) == 1


async def test_run_plan_over_its_tool_call_budget_keeps_the_finished_outputs() -> None:
    plan = llmc.Plan.parse("1. small(1)\n2. small($1)\n3. small($2)\n4. small($3)", tools=[small])
    with pytest.raises(BudgetExceeded) as caught:
        await llmc.run_plan(plan, budget=Budget(max_tool_calls=2))
    result = caught.value.result
    assert result is not None and caught.value.partial is result
    assert result.outputs == {1: 2, 2: 4}
    assert result.status(3) is TaskStatus.FAILED and result.status(4) is TaskStatus.CANCELLED
    # a budget without a tool limit changes nothing, and a roomy one lets everything run
    assert (await llmc.run_plan(plan, budget=Budget(max_tokens=1))).outputs[4] == 16
    assert (await llmc.run_plan(plan, budget=Budget(max_tool_calls=4))).outputs[4] == 16


async def test_budgets_and_usage_add_up_across_replans() -> None:
    llm = ScriptedLLM(
        [
            "1. small(1)\n2. small(2)\njoin()\n<END_OF_PLAN>",
            "Thought: more.\nAction: Replan(need three)",
            "3. small(3)\n4. small($3)\njoin()\n<END_OF_PLAN>",
            FINISH,
        ],
        model="priced",
    )
    events = EventRecorder()
    budget = Budget(max_tool_calls=4, prices={"priced": Price(1.0, 2.0)})
    answer = await Compiler([small], llm, budget=budget).run("q?", on_event=events)
    assert answer.replans == 1 and answer.text == "done"
    meter = answer.meter
    assert meter is not None and meter.tool_calls == 4
    spans = [s for s in answer.trace.spans if s.usage is not None]
    assert len(spans) == 4 == answer.llm_calls == answer.usage.calls
    assert answer.usage.total_tokens == sum(s.usage.total_tokens for s in spans if s.usage)
    assert meter.usage == answer.usage
    by_node = answer.usage_by_node
    assert by_node["planner"].calls == by_node["joiner"].calls == 2
    assert by_node["planner"] + by_node["joiner"] == answer.usage
    assert answer.cost == pytest.approx(
        (answer.usage.prompt_tokens * 1.0 + answer.usage.completion_tokens * 2.0) / 1e6
    )
    usage_events = events.of_type(LLMUsage)
    assert [e.kind for e in usage_events] == ["planner", "joiner", "planner", "joiner"]
    assert usage_events[-1].total == answer.usage
    assert usage_events[-1].total_cost == pytest.approx(answer.cost)
    assert usage_events[0].counter == "estimate" and not usage_events[0].exact
    # one tool call more than the budget, over the two rounds: the second plan stops
    llm2 = ScriptedLLM(llm._script.replies)  # type: ignore[arg-type]
    with pytest.raises(BudgetExceeded) as caught:
        await Compiler([small], llm2, budget=Budget(max_tool_calls=3)).run("q?")
    partial = caught.value.answer
    assert len(partial.rounds) == 2 and partial.results[1].outputs == {3: 6}
    assert partial.rounds[0].reason == "need three"


async def test_the_replanning_planner_sees_earlier_observations_within_the_window() -> None:
    llm = ScriptedLLM(
        [
            '1. fetch("a")\njoin()\n<END_OF_PLAN>',
            "Thought: more.\nAction: Replan(need b)",
            '2. fetch("b")\njoin()\n<END_OF_PLAN>',
            FINISH,
        ]
    )
    answer = await Compiler([fetch], llm, budget=Budget(context_window=4000)).run("q?")
    meter = answer.meter
    assert meter is not None
    counter = meter.counter(llm)
    for call in llm.calls:
        assert count_messages(counter, call.messages) <= 4000
    replan = llm.calls[2].messages[1]["content"]
    assert "<<a starts>>" in replan and "characters cut" in replan


async def test_tale_writes_the_estimated_budget_into_the_joiner_prompt() -> None:
    def script(messages: Sequence[Message]) -> str:
        first = messages[0]["content"]
        if first.startswith("Task: Analyze"):
            return "Budget: [[40]]"
        if "<END_OF_PLAN>" in first:
            return "1. small(1)\njoin()\n<END_OF_PLAN>"
        return FINISH

    llm = ScriptedLLM(script)
    budget = Budget(tale=True, slack=1.5)
    answer = await Compiler([small], llm, budget=budget).run("What is twice one?")
    estimator, planner, joiner = llm.calls
    assert "Question: What is twice one?" in estimator.messages[0]["content"]
    assert "Use less than 40 tokens for your reply." in joiner.messages[1]["content"]
    assert joiner.options.max_tokens == math.ceil(40 * 1.5)
    assert "Use less than" not in planner.messages[1]["content"]
    assert answer.meter is not None and answer.meter.output_budget == 40
    assert [s.kind for s in answer.trace.spans] == ["estimator", "planner", "joiner"]
    assert answer.usage_by_node["estimator"].calls == 1 and answer.llm_calls == 3
    # a node budget below the TALE cap wins
    llm = ScriptedLLM(script)
    await Compiler([small], llm, budget=budget.replace(joiner_output=30)).run("q?")
    assert llm.calls[2].options.max_tokens == 30


async def test_tale_falls_back_when_the_estimator_says_no_number() -> None:
    llm = ScriptedLLM(["I am not sure.", "1. small(1)\njoin()\n<END_OF_PLAN>", FINISH])
    budget = Budget(tale=True, tale_fallback=100, slack=2.0)
    answer = await Compiler([small], llm, budget=budget).run("q?")
    assert answer.meter is not None and answer.meter.output_budget == 100
    assert llm.calls[2].options.max_tokens == 200


async def test_a_summarizing_reducer_is_a_budgeted_node_of_its_own() -> None:
    summarizer = ScriptedLLM(lambda messages: "Page a: lorem ipsum, 12345.", model="small")
    llm = ScriptedLLM(['1. fetch("a")\n2. small(1)\njoin()\n<END_OF_PLAN>', FINISH])
    budget = Budget(observation_tokens=50, reducer=Summarize(summarizer, max_input_tokens=500))
    answer = await Compiler([fetch, small], llm, budget=budget).run("What does page a say?")
    (call,) = summarizer.calls
    assert "What does page a say?" in call.messages[0]["content"]
    assert call.options.max_tokens == 50
    assert count_messages(Estimate(per_char=0.25), call.messages) < 700
    user = joiner_calls(llm)[0][1]["content"]
    assert "Observation: Page a: lorem ipsum, 12345." in user
    kinds = [s.kind for s in answer.trace.spans]
    assert kinds == ["planner", "summarizer", "joiner"]
    assert answer.trace.spans[1].label == "summarize $1"
    assert answer.usage_by_node["summarizer"].calls == 1


async def test_the_joiner_alone_uses_its_own_budget() -> None:
    from llmc.joiner import Joiner
    from llmc.task import Task

    llm = ScriptedLLM([FINISH])
    joiner = Joiner(llm, budget=Budget(observation_tokens=30, counter=Estimate(per_char=0.25)))
    decision = await joiner.decide("q?", [Task(1, "fetch", ("a",))], {1: MEGABYTE})
    assert decision.text == "done"
    user = llm.calls[0].messages[1]["content"]
    assert Estimate(per_char=0.25).count(user) < 30 + 30


async def test_usage_is_logged_when_structlog_is_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import structlog

    meter = Meter(Budget(), run_id="r1")
    llm = ScriptedLLM(["x"])
    from llmc.trace import Span

    span = Span("joiner", "join 1", 0.0)
    structlog.configure()  # llmc logs only once the application configured structlog
    with structlog.testing.capture_logs() as logs:
        messages: list[Message] = [{"role": "user", "content": "hi"}]
        meter.after_llm_call(llm, messages, "ok", span, kind="joiner")
    assert logs and logs[0]["event"] == "llm usage" and logs[0]["run_id"] == "r1"
    assert span.usage is not None and span.usage.calls == 1  # counted: the server sent none


async def test_a_cancelled_run_with_a_budget_leaves_nothing_running() -> None:
    @llmc.tool
    async def slow(x: int) -> int:
        """Wait.

        Args:
            x: a number.
        """
        await asyncio.sleep(10)
        return x

    plan = llmc.Plan.parse("1. slow(1)\n2. slow(2)", tools=[slow])
    run = asyncio.ensure_future(llmc.run_plan(plan, budget=Budget(max_tool_calls=5)))
    await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
