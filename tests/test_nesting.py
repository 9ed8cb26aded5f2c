"""Arguments nested without bound: every reader answers with a positioned PlanError.

Python's own limits (recursion, the tokenizer's 200 parentheses) must never show through:
the plan language, JSON plans, ``Plan.add`` and the compiler all stop at ``MAX_NESTING``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmc
from llmc import Plan, PlanParser
from llmc.compiler import Compiler
from llmc.json_plan import JsonPlanParser
from llmc.task import MAX_NESTING
from llmc.testing import ScriptedLLM

OPENERS = {"list": ("[", "]"), "dict": ('{"k": ', "}"), "tuple": ("(", ",)"), "set": ("{", "}")}


@llmc.tool
def echo(value: object) -> str:
    """Say what it got.

    Args:
        value: anything.
    """
    return str(value)[:20]


def nested_text(kinds: list[str], leaf: str = "1") -> str:
    return (
        "".join(OPENERS[k][0] for k in kinds)
        + leaf
        + "".join(OPENERS[k][1] for k in reversed(kinds))
    )


def nested_json_text(depth: int, kind: str) -> str:
    opener, closer = ("[", "]") if kind == "list" else ('{"k": ', "}")
    return opener * depth + "1" + closer * depth


def nested_json(depth: int, kind: str) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


kinds_of_one = st.builds(
    lambda kind, depth: [kind] * depth,
    st.sampled_from(sorted(OPENERS)),
    st.integers(min_value=1, max_value=3000),
)
nestings = kinds_of_one | st.lists(st.sampled_from(sorted(OPENERS)), min_size=1, max_size=3000)


@settings(max_examples=60, deadline=None)
@given(kinds=nestings, chunk=st.integers(min_value=1, max_value=5000))
def test_plan_text_of_any_nesting_gives_a_task_or_a_positioned_error(kinds, chunk) -> None:
    text = f"1. echo({nested_text(kinds)})\njoin()\n"
    parser = PlanParser(tools=[echo])
    try:
        for start in range(0, len(text), chunk):
            parser.feed(text[start : start + chunk])
        parser.close()
    except llmc.PlanError as exc:
        assert len(kinds) > MAX_NESTING or "set" in kinds, exc  # (sets of dicts are refused)
        assert exc.line == 1 and exc.column is not None
    else:
        assert len(kinds) <= MAX_NESTING
        assert [t.id for t in parser.tasks] == [1]


@pytest.mark.parametrize("kind", ["list", "dict", "tuple"])
def test_the_bound_is_exact_in_the_plan_language(kind: str) -> None:
    ok = PlanParser().feed(f"1. echo({nested_text([kind] * MAX_NESTING)})\n")
    assert len(ok) == 1
    with pytest.raises(llmc.PlanSyntaxError, match=f"deeper than {MAX_NESTING}") as info:
        PlanParser().feed(f"1. echo({nested_text([kind] * (MAX_NESTING + 1))})\n")
    assert info.value.line == 1 and (info.value.column or 0) > 8


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=1, max_value=5000), kind=st.sampled_from(["list", "dict"]))
def test_json_plans_of_any_nesting_give_a_plan_or_a_positioned_error(depth, kind) -> None:
    argument = nested_json_text(depth, kind)
    text = '{"tasks": [{"id": 1, "tool": "echo", "args": [' + argument + "]}]}"
    try:
        plan = Plan.from_json(text, tools=[echo])
    except llmc.PlanError as exc:
        assert depth > MAX_NESTING and exc.line == 1 and exc.column is not None
    else:
        assert depth <= MAX_NESTING and len(plan) == 1
    parser = JsonPlanParser(tools=[echo])
    try:
        tasks = parser.feed(text)
        parser.close()
    except llmc.PlanError as exc:
        assert depth > MAX_NESTING and exc.line == 1 and exc.column is not None
    else:
        assert depth <= MAX_NESTING and [t.id for t in tasks] == [1]


def test_plan_add_refuses_arguments_past_the_bound() -> None:
    plan = Plan()
    plan.add("echo", nested_json(MAX_NESTING, "list"))
    with pytest.raises(llmc.PlanError, match=f"deeper than {MAX_NESTING}"):
        plan.add("echo", nested_json(5000, "list"))


async def test_a_deep_plan_goes_to_the_repair_round_and_the_run_answers() -> None:
    deep = f"1. echo({nested_text(['list'] * 1000)})\njoin()"
    llm = ScriptedLLM([deep, '1. echo("flat")\njoin()', "Action: Finish(flat)"])
    answer = await Compiler([echo], llm).run("?")
    assert answer.text == "flat"
    assert f"deeper than {MAX_NESTING}" in llm.calls[1].messages[-1]["content"]
