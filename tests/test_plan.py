"""Plans built from Python, text and JSON; validation; views."""

from __future__ import annotations

import json

import pytest
from plan_tools import TOOLS, math, search

import llmc
from llmc import Plan, Ref, Task


def build() -> Plan:
    plan = Plan(tools=TOOLS)
    a = plan.add(search, "Mariana Trench")
    b = plan.add(search, "Puerto Rico Trench", thought="both at once")
    plan.add(math, f"compare {a} and {b}", context=[a, b])
    return plan


def test_python_built_plan_has_refs_and_dependencies() -> None:
    plan = build()
    assert [t.id for t in plan] == [1, 2, 3]
    third = plan[3]
    assert third.args == ("compare ${1} and ${2}",)
    assert third.kwargs == {"context": [Ref(1), Ref(2)]}
    assert third.dependencies == {1, 2}
    assert plan[2].thought == "both at once"
    assert sorted(plan.graph.edges) == [(1, 3), (2, 3)]
    assert plan.dependents(1) == [3]


def test_three_ways_give_the_same_plan() -> None:
    plan = build()
    assert Plan.parse(plan.to_text(), tools=TOOLS) == plan
    assert Plan.from_json(plan.to_json(), tools=TOOLS) == plan
    assert json.loads(plan.to_json())["tasks"][2]["kwargs"]["context"] == [{"$ref": 1}, {"$ref": 2}]


def test_views_levels_width_critical_path() -> None:
    plan = build()
    assert plan.levels() == [[1, 2], [3]]
    assert plan.width() == 2
    length, path = plan.critical_path({1: 1.0, 2: 3.0, 3: 0.5})
    assert (length, path) == (3.5, [2, 3])
    assert plan.critical_path(lambda task: 1.0) == (2.0, [1, 3])
    assert Plan().critical_path({}) == (0.0, [])
    assert Plan().levels() == [] and Plan().width() == 0


def test_json_tasks_in_any_order_are_sorted() -> None:
    data = {
        "tasks": [
            {"id": 2, "tool": "search", "args": [{"$ref": 1}]},
            {"id": 1, "tool": "search", "args": ["x"]},
        ]
    }
    assert [t.id for t in Plan.from_dict(data)] == [1, 2]


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (
            {"tasks": [{"id": 1, "tool": "search", "args": [{"$ref": 1}]}]},
            llmc.CycleError,
            r"\$1 -> \$1",
        ),
        (
            {
                "tasks": [
                    {"id": 1, "tool": "search", "args": [{"$ref": 1}]},
                    {"id": 2, "tool": "search", "args": [{"$ref": 3}]},
                    {"id": 3, "tool": "search", "args": ["$2"]},
                ]
            },
            llmc.CycleError,
            "cycle",
        ),
        (
            {"tasks": [{"id": 1, "tool": "search", "args": ["$7"]}]},
            llmc.PlanError,
            r"\$7, which does not exist",
        ),
        (
            {"tasks": [{"id": 1, "tool": "search"}, {"id": 1, "tool": "search"}]},
            llmc.PlanError,
            "defined twice",
        ),
        ({"tasks": [{"id": 0, "tool": "search"}]}, llmc.PlanError, "not a valid plan"),
        ({"tasks": [{"id": 1, "tool": "search", "extra": 1}]}, llmc.PlanError, "not a valid plan"),
        (
            {"tasks": [{"id": 1, "tool": "search", "args": [{"$ref": "x"}]}]},
            llmc.PlanError,
            "needs a task id",
        ),
    ],
)
def test_bad_json_plans(data, error, words) -> None:
    with pytest.raises(error, match=words):
        Plan.from_dict(data)


def test_from_json_reports_position_of_bad_json() -> None:
    with pytest.raises(llmc.PlanError) as info:
        Plan.from_json('{"tasks": [\n  {"id": 1,,}]}')
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda p: p.add("serch", "x"), llmc.UnknownToolError, "did you mean 'search'"),
        (lambda p: p.add(search), llmc.PlanError, "missing required argument 'query'"),
        (lambda p: p.add(search, "x", limit=3), llmc.PlanError, "unexpected argument 'limit'"),
        (lambda p: p.append(Task(9, "search", (Ref(12),))), llmc.PlanError, "a later task"),
        (lambda p: p.append(Task(9, "search", ("$5",))), llmc.PlanError, "never defined"),
        (lambda p: p.append(Task(1, "search", ("x",))), llmc.PlanError, "defined twice"),
    ],
)
def test_validation_errors_name_the_task(make, error, words) -> None:
    plan = Plan(tools=TOOLS)
    plan.add(search, "first")
    plan.add(search, "second")
    with pytest.raises(error, match=words) as info:
        make(plan)
    assert info.value.task_id is not None
    assert len(plan) == 2  # nothing half-added


def test_validate_against_other_tools() -> None:
    plan = Plan.parse('1. search("x")\n2. lookup($1)\n')
    with pytest.raises(llmc.UnknownToolError, match="task 2: unknown tool 'lookup'"):
        plan.validate([search])
    with pytest.raises(llmc.PlanError, match="needs tools"):
        plan.validate()


def test_dollar_escape_and_text_references() -> None:
    plan = Plan.parse('1. search("x")\n2. search("costs $$5 for $1, see ${1}0")\n')
    assert plan[2].dependencies == {1}
    with pytest.raises(llmc.PlanError, match=r"refers to \$5"):
        Plan.parse('1. search("costs $5")\n')


def test_render_rejects_values_without_literals() -> None:
    plan = Plan()
    plan.add("f", float("nan"))
    with pytest.raises(llmc.PlanError, match="no literal form"):
        plan.to_text()
    other = Plan()
    other.add("f", object())
    with pytest.raises(llmc.PlanError, match="cannot be written"):
        other.to_text()
