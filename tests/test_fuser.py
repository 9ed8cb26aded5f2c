"""Plan-time fusion: fused tools in the planner's prompt, expanded into member tasks."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import llmc
from llmc import Plan, Ref, Task, TaskStatus
from llmc.errors import PlanError, ToolDefinitionError
from llmc.fuser import FIRST_MEMBER_ID, Fuser, fuse, suggest_fusions
from llmc.testing import ScriptedLLM

FACTS = {"Mariana Trench": "10994 m", "Puerto Rico Trench": "8376 m", "Java Trench": "7290 m"}
RUNS: Counter[str] = Counter()


@llmc.tool
async def search(query: str) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic, e.g. "Eiffel Tower".
    """
    RUNS["search"] += 1
    await asyncio.sleep(0.001)
    return FACTS.get(query, "0 m")


@llmc.tool
def math(problem: str, context: str = "") -> float:
    """Compute with the first number of the context as x.

    Args:
        problem: an expression in x, e.g. "x * 0.8".
        context: text whose first word is a number.
    """
    RUNS["math"] += 1
    x = float(context.split()[0]) if context else 0.0
    return float(eval(problem, {"__builtins__": {}}, {"x": x}))


@llmc.tool
def label(value: Any, prefix: str = "=") -> str:
    """Label a value.

    Args:
        value: anything.
        prefix: put before it.
    """
    RUNS["label"] += 1
    return f"{prefix}{value}"


search_then_math = fuse(search, (math, "context"))


@pytest.fixture(autouse=True)
def _count() -> None:
    RUNS.clear()


# -- declaring -------------------------------------------------------------------------------


def test_the_fused_tool_has_a_combined_signature_for_the_planner() -> None:
    line = search_then_math.signature_line()
    assert line.startswith("search_then_math(query: str, problem: str) -> float  # ")
    assert line.endswith("# Same as math(problem, context=search(query)).")
    schema = search_then_math.json_schema()["function"]["parameters"]
    assert schema["required"] == ["query", "problem"]
    assert schema["properties"]["query"]["description"] == 'a topic, e.g. "Eiffel Tower".'
    assert search_then_math.members == (search, math)


def test_the_feed_is_the_first_parameter_unless_named() -> None:
    chained = fuse(math, label)
    assert chained.name == "math_then_label"
    assert chained.steps[1].feed == "value"
    # required parameters first, then those with defaults, each in member order
    assert chained.parameters == ("problem", "context", "prefix")
    assert chained.required == ("problem",)


def test_clashing_parameter_names_get_their_tools_prefix() -> None:
    twice = fuse(label, label, name="label_twice")
    assert twice.parameters == ("value", "prefix", "label_prefix")
    assert twice.description == "Same as label(label(value, prefix), label_prefix)."


def test_fuse_rejects_what_it_cannot_chain() -> None:
    with pytest.raises(ToolDefinitionError, match="two tools or more"):
        fuse(search)
    with pytest.raises(ToolDefinitionError, match="no parameter 'nope'"):
        fuse(search, (math, "nope"))
    with pytest.raises(ToolDefinitionError, match="first tool"):
        fuse((search, "query"), math)


async def test_an_unexpanded_fused_tool_runs_its_chain_in_one_call() -> None:
    assert await search_then_math("Mariana Trench", "x * 0.5") == 5497.0
    plan = Plan.parse('1. search_then_math("Java Trench", "x + 10")', tools=[search_then_math])
    result = await llmc.run_plan(plan)
    assert result.outputs == {1: 7300.0} and RUNS == {"search": 2, "math": 2}


# -- expanding -------------------------------------------------------------------------------

FUSED_PLAN = """\
1. search_then_math("Mariana Trench", "x * 0.8")
2. search_then_math("Puerto Rico Trench", problem="x * 1.2")
3. label($2, prefix="deeper: ")
4. label("$1 vs $2")
"""

UNFUSED_PLAN = """\
1. search("Mariana Trench")
2. math("x * 0.8", $1)
3. search("Puerto Rico Trench")
4. math("x * 1.2", $3)
5. label($4, prefix="deeper: ")
6. label("$2 vs $4")
"""


def test_expand_plan_replaces_each_fused_call_by_its_members() -> None:
    plan = Plan.parse(FUSED_PLAN, tools=[search, math, label, search_then_math])
    expanded = Fuser().expand_plan(plan)
    assert [(t.id, t.tool) for t in expanded] == [
        (5, "search"),
        (1, "math"),
        (6, "search"),
        (2, "math"),
        (3, "label"),
        (4, "label"),
    ]
    assert expanded[1].kwargs == {"problem": "x * 0.8", "context": Ref(5)}
    assert expanded.fused_groups == {"search_then_math $1": (5, 1), "search_then_math $2": (6, 2)}
    assert expanded.tools is not None and {"search", "math"} <= set(expanded.tools)
    assert expanded[3].dependencies == {2}  # $2 is the chain's last member


async def test_an_expanded_plan_gives_the_outputs_of_the_hand_written_plan() -> None:
    plan = Plan.parse(FUSED_PLAN, tools=[search, math, label, search_then_math])
    fused = await llmc.run_plan(Fuser().expand_plan(plan))
    unfused = await llmc.run_plan(Plan.parse(UNFUSED_PLAN, tools=[search, math, label]))
    assert fused.ok and unfused.ok
    assert fused.outputs[3] == unfused.outputs[5] == "deeper: 10051.199999999999"
    assert fused.outputs[4] == unfused.outputs[6]
    assert fused.outputs[1] == unfused.outputs[2] and fused.outputs[2] == unfused.outputs[4]


async def test_streamed_tasks_expand_one_by_one_with_ids_above_the_planners() -> None:
    fuser = Fuser([search_then_math])

    async def planner() -> AsyncIterator[Task]:
        yield Task(1, "search_then_math", ("Java Trench", "x - 1"))
        await asyncio.sleep(0.01)
        yield Task(2, "label", (Ref(1),))

    seen: list[int] = []

    async def watch() -> AsyncIterator[Task]:
        async for task in fuser.expand_stream(planner()):
            seen.append(task.id)
            yield task

    result = await llmc.run_plan(watch(), tools=[search, math, label])
    assert seen == [FIRST_MEMBER_ID, 1, 2]
    assert result.outputs[2] == "=7289.0"
    assert fuser.groups == {"search_then_math $1": (FIRST_MEMBER_ID, 1)}
    with pytest.raises(PlanError, match="kept for the members"):
        fuser.expand(Task(FIRST_MEMBER_ID + 5, "label", ("x",)))


def test_nested_fused_tools_expand_all_the_way() -> None:
    three = fuse(search_then_math, label)
    assert three.parameters == ("query", "problem", "prefix")
    plan = Plan([Task(1, three.name, ("Java Trench", "x"))], tools=[three])
    expanded = Fuser().expand_plan(plan)
    assert [(t.id, t.tool) for t in expanded] == [(3, "search"), (2, "math"), (1, "label")]
    assert expanded.fused_groups == {f"{three.name} $1": (3, 2, 1)}


def test_a_fused_call_that_does_not_fit_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="task 1"):
        Fuser([search_then_math]).expand(Task(1, "search_then_math", ("only one",)))


# -- in the compiler -------------------------------------------------------------------------

PLANNED = FUSED_PLAN + "join()\n<END_OF_PLAN>"
FINISH = "Thought: done.\nAction: Finish(Puerto Rico Trench)"


async def test_the_compiler_offers_fused_tools_and_runs_their_members() -> None:
    llm = ScriptedLLM([PLANNED, FINISH], chunk_size=5)
    compiler = llmc.Compiler([search, math, label], llm, fused=[search_then_math])
    answer = await compiler.run("If the Mariana were 20% shallower ...?")
    system = llm.calls[0].messages[0]["content"]
    assert "search_then_math(query: str, problem: str) -> float" in system
    assert RUNS == {"search": 2, "math": 2, "label": 2}
    outputs = answer.results[0].outputs
    assert outputs[1] == 8795.2 and outputs[3] == "deeper: 10051.199999999999"
    assert outputs[FIRST_MEMBER_ID] == "10994 m"
    # the joiner reads the planner's own tasks, with each chain's final output
    joiner = llm.calls[1].messages[1]["content"]
    assert "search_then_math('Mariana Trench', 'x * 0.8')\nObservation: 8795.2" in joiner
    assert "10994 m" not in joiner
    plan = answer.plan
    assert [t.id for t in plan] == [FIRST_MEMBER_ID, 1, FIRST_MEMBER_ID + 1, 2, 3, 4]
    assert plan.fused_groups == {
        "search_then_math $1": (FIRST_MEMBER_ID, 1),
        "search_then_math $2": (FIRST_MEMBER_ID + 1, 2),
    }
    assert set(answer.dispatch_delays) == {FIRST_MEMBER_ID, FIRST_MEMBER_ID + 1}
    assert answer.trace.tasks[FIRST_MEMBER_ID].status is TaskStatus.DONE


async def test_replans_keep_member_ids_unique_and_may_use_fused_outputs() -> None:
    llm = ScriptedLLM(
        [
            '1. search_then_math("Java Trench", "x")\njoin()',
            "Thought: need more.\nAction: Replan(the Mariana Trench)",
            '2. search_then_math("Mariana Trench", "x")\n3. label($1)\njoin()',
            FINISH,
        ]
    )
    compiler = llmc.Compiler([label], llm, fused=[search_then_math])  # members not in tools
    answer = await compiler.run("?")
    assert answer.replans == 1
    assert answer.results[1].outputs == {FIRST_MEMBER_ID + 1: "10994 m", 2: 10994.0, 3: "=7290.0"}
    assert sorted(answer.trace.tasks) == [1, 2, 3, FIRST_MEMBER_ID, FIRST_MEMBER_ID + 1]


async def test_fused_tools_may_be_given_among_the_tools() -> None:
    llm = ScriptedLLM(['1. search_then_math("Java Trench", "x / 2")\njoin()', FINISH])
    compiler = llmc.Compiler([search_then_math], llm)
    answer = await compiler.run("?")
    assert answer.results[0].outputs[1] == 3645.0 and RUNS == {"search": 1, "math": 1}


# -- suggestions -----------------------------------------------------------------------------


def test_suggestions_count_plans_where_one_tool_consumes_anothers_output() -> None:
    tools = [search, math, label]
    history = [
        Plan.parse(UNFUSED_PLAN, tools=tools),
        Plan.parse('1. search("x")\n2. math("x", context=$1)', tools=tools),
        Plan.parse('1. search("x")\n2. label($1)', tools=tools),
    ]
    found = suggest_fusions(history, tools=tools)
    assert [(s.first, s.then, s.feed, s.plans) for s in found] == [("search", "math", "context", 2)]
    assert found[0].examples[0] == (0, 1, 2)
    fused = found[0].fuse(tools)
    assert fused.signature_line().startswith("search_then_math(query: str, problem: str)")
    everything = suggest_fusions(history, min_plans=1)
    assert ("search", "math", 1, 1) in [(s.first, s.then, s.feed, s.plans) for s in everything]
    assert ("math", "label", 0, 1) in [(s.first, s.then, s.feed, s.plans) for s in everything]


async def test_suggestions_read_answers_too() -> None:
    llm = ScriptedLLM([UNFUSED_PLAN + "join()", FINISH, UNFUSED_PLAN + "join()", FINISH])
    compiler = llmc.Compiler([search, math, label], llm)
    answers = [await compiler.run("a"), await compiler.run("b")]
    found = suggest_fusions(answers, tools=[search, math, label])
    pairs = {(s.first, s.then, s.feed): s.plans for s in found}
    assert pairs == {("search", "math", "context"): 2, ("math", "label", "value"): 2}
